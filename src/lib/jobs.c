/* jobs.c — progress and cancellation of one long operation.
 * The operation's thread calls rp_job_add as bytes move; any thread may
 * call rp_job_cancel and rp_job_percent. */
#include "internal.h"

rp_job *rp_job_new(rp_progress_fn fn, void *user)
{
  rp_job *j = rp_xcalloc(1, sizeof *j);
  j->fn = fn;
  j->user = user;
  return j;
}

void rp_job_free(rp_job *job)
{
  free(job);
}

void rp_job_cancel(rp_job *job)
{
  if (job)
    __atomic_store_n(&job->cancel, 1, __ATOMIC_SEQ_CST);
}

int rp_job_percent(const rp_job *job)
{
  return job ? __atomic_load_n(&job->percent, __ATOMIC_RELAXED) : 0;
}

void rp_job_set_total(rp_job *job, uint64_t total)
{
  if (!job)
    return;
  job->total = total;
  job->done = 0;
  if (job->fn)
    job->fn(job->user, 0, total);
}

void rp_job_add(rp_job *job, uint64_t bytes)
{
  if (!job)
    return;
  job->done += bytes;
  int pct = job->total ? (int)(job->done * 100 / job->total) : 100;
  __atomic_store_n(&job->percent, pct > 100 ? 100 : pct, __ATOMIC_RELAXED);
  if (job->fn)
    job->fn(job->user, job->done, job->total);
}

int rp_job_check(rp_job *job)
{
  if (job && __atomic_load_n(&job->cancel, __ATOMIC_SEQ_CST))
    return rp_err_set(RP_E_CANCELLED, 0, "cancelled");
  return 0;
}
