/* output.c — what refpoint(1) prints: JSON objects with CIM property names,
 * human-readable text, errors, and the progress bar. */
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

json_t *cli_vs_json(const rp_vs_info *vs)
{
  json_t *o = json_object(), *d = json_array();
  json_object_set_new(o, "Name", json_string(vs->name));
  json_object_set_new(o, "ElementName", json_string(vs->element_name));
  json_object_set_new(o, "RuntimeState", json_string(vs->runtime_state ? vs->runtime_state : ""));
  json_object_set_new(o, "QmpSocket", vs->qmp_socket ? json_string(vs->qmp_socket) : json_null());
  json_object_set_new(o, "GuestAgentSocket",
                      vs->agent_socket ? json_string(vs->agent_socket) : json_null());
  json_object_set_new(o, "Capture", json_string(vs->capture ? vs->capture : "snapshot"));
  json_object_set_new(o, "Libvirt", vs->libvirt_uri ? json_string(vs->libvirt_uri) : json_null());
  for (size_t i = 0; i < vs->n_disks; i++) {
    json_t *e = json_object();
    json_object_set_new(e, "InstanceID", json_string(vs->disks[i].instance_id));
    json_object_set_new(e, "Path", json_string(vs->disks[i].path));
    if (vs->disks[i].target)
      json_object_set_new(e, "Target", json_string(vs->disks[i].target));
    json_object_set_new(e, "VirtualSize", json_integer((json_int_t)vs->disks[i].virtual_size));
    json_array_append_new(d, e);
  }
  json_object_set_new(o, "Disks", d);
  return o;
}

static json_t *strs(char **v, size_t n)
{
  json_t *a = json_array();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(a, json_string(v[i]));
  return a;
}

json_t *cli_point_json(const rp_point_info *p)
{
  json_t *o = json_object();
  json_object_set_new(o, "InstanceID", json_string(p->instance_id));
  json_object_set_new(o, "ElementName", json_string(p->element_name ? p->element_name : ""));
  json_object_set_new(o, "VirtualSystemIdentifier", json_string(p->virtual_system_identifier));
  json_object_set_new(o, "ReferencePointType", json_integer(p->reference_point_type));
  json_object_set_new(o, "ConsistencyLevel", json_integer(p->consistency_level));
  json_object_set_new(o, "HasAssociatedData", json_boolean(p->has_associated_data));
  json_object_set_new(o, "VirtualDiskIdentifiers", strs(p->virtual_disk_identifiers, p->n_disks));
  json_object_set_new(o, "ResilientChangeTrackingIdentifiers", strs(p->rct_identifiers, p->n_disks));
  /* refpoint's own, beyond the CIM class */
  json_object_set_new(o, "ChangeTrackingValid", json_boolean(p->change_tracking_valid));
  if (p->tracking_reason)
    json_object_set_new(o, "ChangeTrackingLostReason", json_string(p->tracking_reason));
  if (p->data_reason && !p->has_associated_data)
    json_object_set_new(o, "AssociatedDataReason", json_string(p->data_reason));
  json_object_set_new(o, "Imported", json_boolean(p->imported));
  json_object_set_new(o, "CreationTime", json_integer(p->created));
  json_object_set_new(o, "Sequence", json_integer(p->sequence));
  return o;
}

json_t *cli_export_json(const rp_export_result *r)
{
  json_t *o = json_object();
  json_object_set_new(o, "JobState", json_integer(7));
  json_object_set_new(o, "JobType", json_integer(203));
  json_object_set_new(o, "PercentComplete", json_integer(100));
  json_object_set_new(o, "ErrorCode", json_integer(0));
  json_object_set_new(o, "ErrorDescription", json_string(""));
  json_object_set_new(o, "ExportDirectory", json_string(r->export_directory));
  json_object_set_new(o, "VirtualMachineId", json_string(r->vs_id));
  json_object_set_new(o, "ReferencePointId", json_string(r->rp_id));
  json_object_set_new(o, "BaseReferencePointId", json_string(r->base_rp_id ? r->base_rp_id : ""));
  json_object_set_new(o, "ExportedDisks", strs(r->disk_ids, r->n_disks));
  json_object_set_new(o, "ExportedLogFilePaths", strs(r->disk_files, r->n_disks));
  json_object_set_new(o, "ExportedConfigFilePath", json_string(r->config_file));
  json_object_set_new(o, "ExportedRuntimeFilePath", json_string(r->runtime_file));
  json_object_set_new(o, "ExportPath", json_string(r->export_path));
  json_object_set_new(o, "DataBytes", json_integer((json_int_t)r->bytes_data));
  json_object_set_new(o, "ElapsedSeconds", json_real(r->seconds));
  return o;
}

void cli_print_json(json_t *o)
{
  char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s) {
    puts(s);
    free(s);
  }
  json_decref(o);
}

int cli_fail(const cli_opts *o, const char *op, bool family_a)
{
  const rp_error *e = rp_last_error();
  uint32_t code = family_a ? rp_err_cim_code(e->code) : rp_err_hyperv_code(e->code);
  const char *detail = e->message;
  /* the message often starts with the operation name already */
  size_t n = strlen(op);
  if (!strncmp(detail, op, n) && detail[n] == ':' && detail[n + 1] == ' ')
    detail += n + 2;
  if (o->json) {
    json_t *j = json_object();
    json_object_set_new(j, "ReturnValue", json_integer(code));
    char *msg = NULL;
    if (asprintf(&msg, "%s: %s", rp_err_sentence(e->code), detail) < 0)
      msg = NULL;
    json_object_set_new(j, "Error", json_string(msg ? msg : ""));
    json_object_set_new(j, "ErrorName", json_string(rp_err_name(e->code)));
    free(msg);
    cli_print_json(j);
  }
  fprintf(stderr, "refpoint: %s: %u %s: %s\n", op, code, rp_err_sentence(e->code), detail);
  return rp_err_exit_code(e->code);
}

/* ---- progress bar ------------------------------------------------------- */

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void cli_human_bytes(double b, char *out, size_t n)
{
  const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (b >= 1024 && i < 4) {
    b /= 1024;
    i++;
  }
  snprintf(out, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void cli_progress(void *user, uint64_t done, uint64_t total)
{
  cli_progress_state *p = user;
  double t = now();
  if (p->start == 0)
    p->start = t;
  if (done < total && t - p->last < 0.1)
    return;
  p->last = t;
  double el = t - p->start, rate = el > 0 ? (double)done / el : 0;
  int pct = total ? (int)(done * 100 / total) : 100;
  char a[32], b[32], r[32];
  cli_human_bytes((double)done, a, sizeof a);
  cli_human_bytes((double)total, b, sizeof b);
  cli_human_bytes(rate, r, sizeof r);
  char bar[31];
  int fill = pct * 30 / 100;
  for (int i = 0; i < 30; i++)
    bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[30] = '\0';
  double eta = rate > 0 ? (double)(total - done) / rate : 0;
  fprintf(stderr, "\r[%s] %3d%% %s/%s %s/s ETA %.0fs  ", bar, pct, a, b, r, eta);
  if (done >= total)
    fputc('\n', stderr);
  p->shown = true;
}
