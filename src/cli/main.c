/* main.c — refpoint(1): the command-line face of librefpoint.
 * Parses the command line (the contract in docs/man/refpoint.1), runs the
 * library in-process and prints text or, with --json, one JSON object. */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: refpoint [--state-dir DIR] [--json] [--quiet] [--export-group GROUP] COMMAND ...\n"
    "  vm add NAME --disk FILE [--disk FILE]... [--qmp SOCKET [--guest-agent SOCKET]\n"
    "         [--capture snapshot|fleecing]]\n"
    "  vm add --libvirt DOMAIN [--connect URI] [--capture snapshot|fleecing]\n"
    "  vm discover [--connect URI]          (every libvirt domain not registered yet)\n"
    "  vm set VM [--qmp SOCKET [--guest-agent SOCKET] [--capture snapshot|fleecing]]\n"
    "         (what is not given is cleared)\n"
    "  vm list | vm show VM | vm remove VM\n"
    "  rp create VM [--consistency crash|application|2|1]\n"
    "  rp list [VM] | rp show RP | rp destroy RP | rp remove-data RP\n"
    "  export RP EXPORT_DIR [--base RP] [--disk DISK_ID]...\n"
    "  import-metadata VM CONFIG_FILE RUNTIME_STATE_FILE\n"
    "  restore EXPORT_PATH... --to DIR        (a chain, oldest first)\n"
    "  verify EXPORT_PATH...\n"
    "VM = name or GUID; RP = InstanceID or GUID; DISK_ID = disk InstanceID or GUID.\n"
    "State directory: --state-dir, else $REFPOINT_STATE_DIR, else /var/lib/refpoint.\n";

static int usage_error(const char *fmt, const char *arg)
{
  fprintf(stderr, "refpoint: ");
  fprintf(stderr, fmt, arg ? arg : "");
  fprintf(stderr, "\n%s", usage);
  return 2;
}

static void warn_cb(void *user, const char *line)
{
  const cli_opts *o = user;
  if (!o->quiet)
    fprintf(stderr, "refpoint: warning: %s\n", line);
}

static rp_ctx *open_ctx(const cli_opts *o)
{
  rp_ctx *ctx = rp_open(o->state_dir);
  if (ctx)
    rp_set_warn(ctx, warn_cb, (void *)o);
  if (ctx && rp_set_export_group(ctx, o->export_group) < 0) {
    rp_close(ctx);
    return NULL;
  }
  return ctx;
}

/* Collects positional args and known "--opt VALUE" pairs from argv. */
typedef struct args {
  const char *pos[256];
  int npos;
  const char *vals[256];
  int nvals;
} args;

static int parse(int argc, char **argv, const char *opt, args *a, const char **single,
                 const char *single_opt)
{
  for (int i = 0; i < argc; i++) {
    if (opt && !strcmp(argv[i], opt)) {
      if (i + 1 >= argc)
        return usage_error("%s needs a value", opt);
      if (a->nvals == 256)
        return usage_error("too many %s", opt);
      a->vals[a->nvals++] = argv[++i];
    } else if (single_opt && !strcmp(argv[i], single_opt)) {
      if (i + 1 >= argc)
        return usage_error("%s needs a value", single_opt);
      *single = argv[++i];
    } else if (argv[i][0] == '-' && argv[i][1] == '-') {
      return usage_error("unknown option %s", argv[i]);
    } else {
      if (a->npos == 256)
        return usage_error("too many arguments%s", NULL);
      a->pos[a->npos++] = argv[i];
    }
  }
  return 0;
}

static void print_point_text(const rp_point_info *p)
{
  printf("InstanceID:            %s\n", p->instance_id);
  printf("ElementName:           %s\n", p->element_name ? p->element_name : "");
  printf("VirtualSystem:         %s\n", p->virtual_system_identifier);
  printf("ConsistencyLevel:      %u (%s)\n", p->consistency_level,
         p->consistency_level == 1 ? "application" : "crash");
  printf("HasAssociatedData:     %s%s%s\n", p->has_associated_data ? "TRUE" : "FALSE",
         !p->has_associated_data && p->data_reason ? " — " : "",
         !p->has_associated_data && p->data_reason ? p->data_reason : "");
  printf("ChangeTracking:        %s%s%s\n", p->change_tracking_valid ? "valid" : "LOST",
         p->tracking_reason ? " — " : "", p->tracking_reason ? p->tracking_reason : "");
  for (size_t i = 0; i < p->n_disks; i++)
    printf("Disk %zu:                %s\n  RCT ID:              %s\n", i,
           p->virtual_disk_identifiers[i], p->rct_identifiers[i]);
}

/* Removes "--name VALUE" from argv (in place) and returns VALUE, NULL when
 * absent; *bad when the value is missing. */
static const char *take_opt(int *argc, char **argv, const char *name, bool *bad)
{
  for (int i = 0; i < *argc; i++) {
    if (strcmp(argv[i], name))
      continue;
    if (i + 1 >= *argc) {
      *bad = true;
      return NULL;
    }
    const char *v = argv[i + 1];
    memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof(char *));
    *argc -= 2;
    return v;
  }
  return NULL;
}

static void print_vs_text(const rp_vs_info *vs)
{
  printf("Name:         %s\nElementName:  %s\nRuntimeState: %s\n", vs->name, vs->element_name,
         vs->runtime_state ? vs->runtime_state : "");
  if (vs->qmp_socket)
    printf("QMP:          %s\n", vs->qmp_socket);
  if (vs->agent_socket)
    printf("GuestAgent:   %s\n", vs->agent_socket);
  if (vs->libvirt_uri)
    printf("Libvirt:      %s\n", vs->libvirt_uri);
  if (vs->qmp_socket || vs->libvirt_uri)
    printf("Capture:      %s\n", vs->capture ? vs->capture : "snapshot");
  for (size_t i = 0; i < vs->n_disks; i++)
    printf("Disk %zu:       %s\n              %s (%llu bytes)%s%s\n", i, vs->disks[i].instance_id,
           vs->disks[i].path, (unsigned long long)vs->disks[i].virtual_size,
           vs->disks[i].target ? ", target " : "", vs->disks[i].target ? vs->disks[i].target : "");
}

static void show_vs(const cli_opts *o, rp_vs_info *vs)
{
  if (o->json)
    cli_print_json(cli_vs_json(vs));
  else
    print_vs_text(vs);
  rp_vs_info_free(vs);
}

static json_t *vs_add_json(rp_vs_info *vs, char **sk, size_t nsk)
{
  json_t *j = cli_vs_json(vs), *a = json_array();
  for (size_t i = 0; i < nsk; i++)
    json_array_append_new(a, json_string(sk[i]));
  json_object_set_new(j, "NotCovered", a);
  return j;
}

static void print_vs_added(const rp_vs_info *vs, char **sk, size_t nsk)
{
  printf("%s\n", vs->name);
  for (size_t i = 0; i < vs->n_disks; i++)
    printf("  disk %s  %s%s%s\n", vs->disks[i].instance_id, vs->disks[i].path,
           vs->disks[i].target ? "  target " : "", vs->disks[i].target ? vs->disks[i].target : "");
  for (size_t i = 0; i < nsk; i++)
    printf("  %s\n", sk[i]);
  if (vs->qmp_socket || vs->libvirt_uri)
    printf("  runtime state: %s (%s %s)\n", vs->runtime_state ? vs->runtime_state : "",
           vs->libvirt_uri ? "libvirt" : "QMP", vs->libvirt_uri ? vs->libvirt_uri : vs->qmp_socket);
}

static int cmd_vm_libvirt(const cli_opts *o, const char *sub, int argc, char **argv,
                          const rp_vs_opts *vo)
{
  bool bad = false;
  const char *uri = take_opt(&argc, argv, "--connect", &bad);
  const char *dom = !strcmp(sub, "add") ? take_opt(&argc, argv, "--libvirt", &bad) : NULL;
  if (bad)
    return usage_error("--libvirt and --connect need a value%s", "");
  if (argc != 1)
    return usage_error(!strcmp(sub, "add") ? "vm add --libvirt DOMAIN [--connect URI]%s"
                                           : "vm discover [--connect URI]%s",
                       "");
  rp_ctx *ctx = open_ctx(o);
  if (!ctx)
    return cli_fail(o, sub, false);
  int rc = 0;
  if (!strcmp(sub, "add")) {
    rp_vs_info *vs;
    char **sk;
    size_t nsk;
    if (rp_vs_add_libvirt(ctx, uri, dom, vo, &vs, &sk, &nsk) < 0)
      rc = cli_fail(o, "vm add", false);
    else {
      if (o->json)
        cli_print_json(vs_add_json(vs, sk, nsk));
      else
        print_vs_added(vs, sk, nsk);
      rp_vs_info_free(vs);
      rp_strv_free(sk, nsk);
    }
  } else {
    rp_vs_info **l;
    size_t n, nsk;
    char **sk;
    if (rp_vs_discover(ctx, uri, &l, &n, &sk, &nsk) < 0)
      rc = cli_fail(o, "vm discover", false);
    else {
      json_t *arr = json_array();
      for (size_t i = 0; i < n; i++) {
        /* the lines of this VM's domain */
        size_t pre = strlen(l[i]->element_name);
        char **mine = calloc(nsk + 1, sizeof(char *));
        if (!mine)
          abort();
        size_t nm = 0;
        for (size_t k = 0; k < nsk; k++)
          if (!strncmp(sk[k], l[i]->element_name, pre) && !strncmp(sk[k] + pre, ": ", 2))
            mine[nm++] = sk[k] + pre + 2;
        if (o->json)
          json_array_append_new(arr, vs_add_json(l[i], mine, nm));
        else
          print_vs_added(l[i], mine, nm);
        free(mine);
      }
      /* domains that could not be registered at all */
      for (size_t k = 0; k < nsk; k++) {
        bool of_added = false;
        for (size_t i = 0; i < n && !of_added; i++) {
          size_t pre = strlen(l[i]->element_name);
          of_added = !strncmp(sk[k], l[i]->element_name, pre) && !strncmp(sk[k] + pre, ": ", 2);
        }
        if (!of_added && !o->quiet)
          fprintf(stderr, "refpoint: vm discover: not registered: %s\n", sk[k]);
      }
      if (o->json)
        cli_print_json(arr);
      else
        json_decref(arr);
      rp_vs_list_free(l, n);
      rp_strv_free(sk, nsk);
    }
  }
  rp_close(ctx);
  return rc;
}

static int cmd_vm(const cli_opts *o, int argc, char **argv)
{
  if (argc < 1)
    return usage_error("vm: add, set, list, show or remove%s", NULL);
  const char *sub = argv[0];
  args a = {0};
  bool bad = false;
  rp_vs_opts vo = {0};
  if (!strcmp(sub, "add") || !strcmp(sub, "set")) {
    vo.qmp_socket = take_opt(&argc, argv, "--qmp", &bad);
    vo.agent_socket = take_opt(&argc, argv, "--guest-agent", &bad);
    vo.capture = take_opt(&argc, argv, "--capture", &bad);
    if (bad)
      return usage_error("--qmp, --guest-agent and --capture need a value%s", "");
    for (int i = 1; i < argc; i++)
      if (!strcmp(sub, "add") && !strcmp(argv[i], "--libvirt")) {
        if (vo.qmp_socket)
          return usage_error("--libvirt takes QMP from libvirt; --qmp is for plain QEMU%s", "");
        return cmd_vm_libvirt(o, sub, argc, argv, &vo);
      }
    if (vo.agent_socket && !vo.qmp_socket)
      return usage_error("--guest-agent needs --qmp (the agent is used only while the VM runs)%s",
                         "");
  }
  if (!strcmp(sub, "discover"))
    return cmd_vm_libvirt(o, sub, argc, argv, &vo);
  if (parse(argc - 1, argv + 1, !strcmp(sub, "add") ? "--disk" : NULL, &a, NULL, NULL))
    return 2;
  rp_ctx *ctx = NULL;
  int rc = 0;
  if (!strcmp(sub, "add")) {
    if (a.npos != 1 || a.nvals < 1)
      return usage_error("vm add NAME --disk FILE [--disk FILE]...%s", NULL);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "vm add", false);
    rp_vs_info *vs;
    if (rp_vs_add(ctx, a.pos[0], a.vals, (size_t)a.nvals, &vo, &vs) < 0)
      rc = cli_fail(o, "vm add", false);
    else if (o->json)
      cli_print_json(cli_vs_json(vs));
    else
      print_vs_added(vs, NULL, 0);
    if (rc == 0)
      rp_vs_info_free(vs);
  } else if (!strcmp(sub, "set")) {
    if (a.npos != 1 || a.nvals)
      return usage_error("vm set VM [--qmp SOCKET [--guest-agent SOCKET] [--capture MODE]]%s", "");
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "vm set", false);
    rp_vs_info *vs;
    if (rp_vs_set_live(ctx, a.pos[0], &vo) < 0 || rp_vs_get(ctx, a.pos[0], &vs) < 0)
      rc = cli_fail(o, "vm set", false);
    else
      show_vs(o, vs);
  } else if (!strcmp(sub, "list")) {
    if (a.npos)
      return usage_error("vm list takes no argument%s", NULL);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "vm list", false);
    rp_vs_info **l;
    size_t n;
    if (rp_vs_list(ctx, &l, &n) < 0)
      rc = cli_fail(o, "vm list", false);
    else {
      json_t *arr = json_array();
      for (size_t i = 0; i < n; i++) {
        if (o->json)
          json_array_append_new(arr, cli_vs_json(l[i]));
        else
          printf("%s  %-20s  %zu disk(s)  %s\n", l[i]->name, l[i]->element_name, l[i]->n_disks,
                 l[i]->runtime_state);
      }
      if (o->json) {
        json_t *obj = json_object();
        json_object_set_new(obj, "VirtualSystems", arr);
        cli_print_json(obj);
      } else
        json_decref(arr);
      rp_vs_list_free(l, n);
    }
  } else if (!strcmp(sub, "show") || !strcmp(sub, "remove")) {
    if (a.npos != 1)
      return usage_error("vm %s VM", sub);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "vm", false);
    if (!strcmp(sub, "remove")) {
      if (rp_vs_remove(ctx, a.pos[0]) < 0)
        rc = cli_fail(o, "vm remove", false);
      else if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "ReturnValue", json_integer(0));
        cli_print_json(j);
      }
    } else {
      rp_vs_info *vs;
      if (rp_vs_get(ctx, a.pos[0], &vs) < 0)
        rc = cli_fail(o, "vm show", false);
      else
        show_vs(o, vs);
    }
  } else
    return usage_error("vm: unknown subcommand %s", sub);
  rp_close(ctx);
  return rc;
}

static int cmd_rp(const cli_opts *o, int argc, char **argv)
{
  if (argc < 1)
    return usage_error("rp: create, list, show, destroy or remove-data%s", NULL);
  const char *sub = argv[0];
  args a = {0};
  const char *cons = NULL;
  if (parse(argc - 1, argv + 1, NULL, &a, &cons, !strcmp(sub, "create") ? "--consistency" : NULL))
    return 2;
  rp_ctx *ctx = NULL;
  int rc = 0;
  if (!strcmp(sub, "create")) {
    uint16_t level = 2;
    if (a.npos != 1)
      return usage_error("rp create VM [--consistency crash|application]%s", NULL);
    /* the names, or the ConsistencyLevel numbers of the contract */
    if (cons && (!strcmp(cons, "application") || !strcmp(cons, "1")))
      level = 1;
    else if (cons && strcmp(cons, "crash") && strcmp(cons, "2"))
      return usage_error("--consistency is crash (2) or application (1), not %s", cons);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "CreateReferencePoint", true);
    rp_point_info *p;
    if (rp_point_create(ctx, a.pos[0], 2, level, NULL, &p) < 0)
      rc = cli_fail(o, "CreateReferencePoint", true);
    else {
      if (o->json)
        cli_print_json(cli_point_json(p));
      else
        printf("%s\n", p->instance_id);
      rp_point_info_free(p);
    }
  } else if (!strcmp(sub, "list")) {
    if (a.npos > 1)
      return usage_error("rp list [VM]%s", NULL);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "rp list", false);
    rp_point_info **l;
    size_t n;
    if (rp_point_list(ctx, a.npos ? a.pos[0] : NULL, &l, &n) < 0)
      rc = cli_fail(o, "rp list", false);
    else {
      json_t *arr = json_array();
      for (size_t i = 0; i < n; i++) {
        if (o->json)
          json_array_append_new(arr, cli_point_json(l[i]));
        else {
          char when[32];
          time_t t = (time_t)l[i]->created;
          strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&t));
          printf("%s  %s  vm %.8s  data %-3s  tracking %s\n", l[i]->instance_id, when,
                 l[i]->virtual_system_identifier, l[i]->has_associated_data ? "yes" : "no",
                 l[i]->change_tracking_valid ? "valid" : "LOST");
        }
      }
      if (o->json) {
        json_t *obj = json_object();
        json_object_set_new(obj, "ReferencePoints", arr);
        cli_print_json(obj);
      } else
        json_decref(arr);
      rp_point_list_free(l, n);
    }
  } else if (!strcmp(sub, "show") || !strcmp(sub, "destroy") || !strcmp(sub, "remove-data")) {
    if (a.npos != 1)
      return usage_error("rp %s RP", sub);
    if (!(ctx = open_ctx(o)))
      return cli_fail(o, "rp", false);
    if (!strcmp(sub, "show")) {
      rp_point_info *p;
      if (rp_point_get(ctx, a.pos[0], &p) < 0)
        rc = cli_fail(o, "rp show", false);
      else {
        if (o->json)
          cli_print_json(cli_point_json(p));
        else
          print_point_text(p);
        rp_point_info_free(p);
      }
    } else {
      bool destroy = !strcmp(sub, "destroy");
      const char *op = destroy ? "DestroyReferencePoint" : "RemoveAssociatedData";
      int r = destroy ? rp_point_destroy(ctx, a.pos[0], NULL)
                      : rp_point_remove_data(ctx, a.pos[0], NULL);
      if (r < 0)
        rc = cli_fail(o, op, false);
      else if (o->json) {
        json_t *j = json_object();
        json_object_set_new(j, "ReturnValue", json_integer(0));
        json_object_set_new(j, "InstanceID", json_string(a.pos[0]));
        cli_print_json(j);
      }
    }
  } else
    return usage_error("rp: unknown subcommand %s", sub);
  rp_close(ctx);
  return rc;
}

/* Ctrl-C or SIGTERM during a long operation cancels it cleanly: the
 * library stops at the next piece and removes what it had written. */
static rp_job *volatile running_job;
static void on_signal(int sig)
{
  (void)sig;
  if (running_job)
    rp_job_cancel(running_job);
}

static void catch_signals(rp_job *job)
{
  running_job = job;
  struct sigaction sa = {0};
  sa.sa_handler = job ? on_signal : SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
}

static int cmd_export(const cli_opts *o, int argc, char **argv)
{
  args a = {0};
  const char *base = NULL;
  /* --base and --disk: parse --disk as repeated, --base as single */
  if (parse(argc, argv, "--disk", &a, &base, "--base"))
    return 2;
  if (a.npos != 2)
    return usage_error("export RP EXPORT_DIR [--base RP] [--disk DISK_ID]...%s", NULL);
  rp_ctx *ctx = open_ctx(o);
  if (!ctx)
    return cli_fail(o, "ExportReferencePoint", false);
  cli_progress_state ps = {0};
  rp_job *job = rp_job_new(isatty(2) && !o->quiet ? cli_progress : NULL, &ps);
  rp_export_opts eo = {.base_rp = base, .disks = a.vals, .n_disks = (size_t)a.nvals};
  rp_export_result *r;
  int rc = 0;
  catch_signals(job);
  int er = rp_export(ctx, a.pos[0], a.pos[1], &eo, job, &r);
  catch_signals(NULL);
  if (er < 0) {
    if (ps.shown)
      fputc('\n', stderr);
    rc = cli_fail(o, "ExportReferencePoint", false);
  } else {
    if (o->json)
      cli_print_json(cli_export_json(r));
    else {
      char b[32], rate[32];
      cli_human_bytes((double)r->bytes_data, b, sizeof b);
      cli_human_bytes(r->seconds > 0 ? (double)r->bytes_data / r->seconds : 0, rate, sizeof rate);
      printf("%s\n", r->export_path);
      if (!o->quiet)
        fprintf(stderr, "refpoint: %s export of %s: %zu disk(s), %s of data in %.2f s (%s/s)\n",
                r->base_rp_id ? "incremental" : "full", r->rp_id, r->n_disks, b, r->seconds,
                rate);
    }
    rp_export_result_free(r);
  }
  rp_job_free(job);
  rp_close(ctx);
  return rc;
}

static int cmd_import(const cli_opts *o, int argc, char **argv)
{
  args a = {0};
  if (parse(argc, argv, NULL, &a, NULL, NULL))
    return 2;
  if (a.npos != 3)
    return usage_error("import-metadata VM CONFIG_FILE RUNTIME_STATE_FILE%s", NULL);
  rp_ctx *ctx = open_ctx(o);
  if (!ctx)
    return cli_fail(o, "ImportReferencePointMetadata", false);
  rp_point_info *p;
  int rc = 0;
  if (rp_point_import(ctx, a.pos[0], a.pos[1], a.pos[2], NULL, &p) < 0)
    rc = cli_fail(o, "ImportReferencePointMetadata", false);
  else {
    if (o->json)
      cli_print_json(cli_point_json(p));
    else
      printf("%s\n", p->instance_id);
    rp_point_info_free(p);
  }
  rp_close(ctx);
  return rc;
}

static int cmd_restore(const cli_opts *o, int argc, char **argv)
{
  args a = {0};
  const char *to = NULL;
  if (parse(argc, argv, NULL, &a, &to, "--to"))
    return 2;
  if (a.npos < 1 || !to)
    return usage_error("restore EXPORT_PATH... --to DIR%s", NULL);
  rp_restore_result *r;
  if (rp_restore(a.pos, (size_t)a.npos, to, NULL, &r) < 0)
    return cli_fail(o, "restore", false);
  json_t *j = json_object();
  for (size_t i = 0; i < r->n_disks; i++) {
    if (o->json)
      json_object_set_new(j, r->disk_ids[i], json_string(r->files[i]));
    else
      printf("%s  %s\n", r->files[i], r->disk_ids[i]);
  }
  if (o->json)
    cli_print_json(j);
  else
    json_decref(j);
  rp_restore_result_free(r);
  return 0;
}

static int cmd_verify(const cli_opts *o, int argc, char **argv)
{
  args a = {0};
  if (parse(argc, argv, NULL, &a, NULL, NULL))
    return 2;
  if (a.npos < 1)
    return usage_error("verify EXPORT_PATH...%s", NULL);
  if (rp_verify(a.pos, (size_t)a.npos, NULL) < 0)
    return cli_fail(o, "verify", false);
  if (o->json) {
    json_t *j = json_object(), *arr = json_array();
    for (int i = 0; i < a.npos; i++)
      json_array_append_new(arr, json_string(a.pos[i]));
    json_object_set_new(j, "ReturnValue", json_integer(0));
    json_object_set_new(j, "Verified", arr);
    cli_print_json(j);
  } else
    for (int i = 0; i < a.npos; i++)
      printf("%s: OK\n", a.pos[i]);
  return 0;
}

int main(int argc, char **argv)
{
  cli_opts o = {0};
  int i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "--json"))
      o.json = true;
    else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
      o.quiet = true;
    else if (!strcmp(argv[i], "--state-dir")) {
      if (++i >= argc)
        return usage_error("--state-dir needs a value%s", NULL);
      o.state_dir = argv[i];
      if (!*o.state_dir)
        return usage_error("--state-dir needs a directory, not an empty value%s", NULL);
    } else if (!strncmp(argv[i], "--state-dir=", 12)) {
      o.state_dir = argv[i] + 12;
      if (!*o.state_dir)
        return usage_error("--state-dir needs a directory, not an empty value%s", NULL);
    }
    else if (!strcmp(argv[i], "--export-group")) {
      if (++i >= argc)
        return usage_error("--export-group needs a value%s", NULL);
      o.export_group = argv[i];
    }
    else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      fputs(usage, stdout);
      return 0;
    } else if (!strcmp(argv[i], "--version")) {
      printf("refpoint %s\n", REFPOINT_VERSION);
      return 0;
    } else
      return usage_error("unknown option %s", argv[i]);
  }
  if (i >= argc)
    return usage_error("no command given%s", NULL);
  const char *cmd = argv[i++];
  int n = argc - i;
  char **rest = argv + i;
  if (!strcmp(cmd, "vm"))
    return cmd_vm(&o, n, rest);
  if (!strcmp(cmd, "rp"))
    return cmd_rp(&o, n, rest);
  if (!strcmp(cmd, "export"))
    return cmd_export(&o, n, rest);
  if (!strcmp(cmd, "import-metadata"))
    return cmd_import(&o, n, rest);
  if (!strcmp(cmd, "restore"))
    return cmd_restore(&o, n, rest);
  if (!strcmp(cmd, "verify"))
    return cmd_verify(&o, n, rest);
  if (!strcmp(cmd, "help")) {
    fputs(usage, stdout);
    return 0;
  }
  return usage_error("unknown command %s", cmd);
}
