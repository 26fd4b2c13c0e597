/* cli.h — internals of refpoint(1). */
#ifndef RP_CLI_H
#define RP_CLI_H
#define _GNU_SOURCE 1
#include "refpoint.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct cli_opts {
  const char *state_dir;
  const char *export_group; /* exports readable by this group (default: private) */
  bool json;
  bool quiet;
} cli_opts;

typedef struct cli_progress_state {
  double start, last;
  bool shown;
} cli_progress_state;

json_t *cli_vs_json(const rp_vs_info *vs);
json_t *cli_point_json(const rp_point_info *p);
json_t *cli_export_json(const rp_export_result *r);
void cli_print_json(json_t *o); /* prints and releases o */
/* Prints the error of the last failed call for operation op; returns the
 * exit code. family_a: CreateReferencePoint's return-code family. */
int cli_fail(const cli_opts *o, const char *op, bool family_a);
void cli_progress(void *user, uint64_t done, uint64_t total);
void cli_human_bytes(double b, char *out, size_t n);
#endif
