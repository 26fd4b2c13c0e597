/* jobs.h — asynchronous jobs of refpointd (Msvm_ConcreteJob and
 * Msvm_VirtualSystemReferencePointExportJob): one thread per running job,
 * a table shared by all connections, views copied out under a lock.
 * Every job is recorded in the state store when it starts and when it ends;
 * at start-up djob_restore reloads them, and a job that was running when
 * the daemon stopped ends as 10 Exception with its partial output removed. */
#ifndef RP_DJOBS_H
#define RP_DJOBS_H
#include "refpoint.h"

enum { DJ_CREATE = 201, DJ_DESTROY = 202, DJ_EXPORT = 203, DJ_REMOVE = 204, DJ_IMPORT = 209 };

typedef struct djob_view {
  char id[37];
  int type;          /* JobType: 201 create, 203 export */
  int state;         /* JobState: 4 running, 7 completed, 8 terminated, 10 exception */
  int percent;
  uint32_t error_code; /* 0 or the method's return code */
  char desc[1400];
  int64_t start, end; /* unix seconds; end 0 while running */
  char *rp_id, *vs_id, *base_id, *export_dir, *export_path, *config, *runtime;
  size_t n;
  char **disks, **files;
} djob_view;

/* Start a job; its InstanceID goes to id. Return 0, or -1 (no thread). */
int djob_create(const char *state_dir, const char *vs, uint16_t type, uint16_t level, char id[37]);
/* Destroy (202), RemoveAssociatedData (204): arg = RP; Import (209): arg = VS,
 * arg2/arg3 = config and runtime-state files. */
int djob_simple(const char *state_dir, int type, const char *arg, const char *arg2,
                const char *arg3, char id[37]);
int djob_export(const char *state_dir, const char *rp, const char *dir, const char *base,
                char *const *disks, size_t n, char id[37]);
/* Views of the jobs still kept (finished jobs go 5 minutes after they end). */
size_t djob_list(djob_view **out);
int djob_get(const char *id, djob_view *out); /* -1 unknown */
int djob_cancel(const char *id);               /* -1 unknown; 1 not running */
void djob_view_clear(djob_view *v);
void djob_views_free(djob_view *v, size_t n);
int djob_restore(const char *state_dir);
/* Exports of later jobs readable by this group (NULL: private). */
void djob_set_export_group(const char *group);
/* DeleteInstance: 0 deleted, 1 still running, -1 unknown */
int djob_delete(const char *id);
#endif
