/* errors.c — the thread-local error record and the one error table.
 *
 * Every failing library call leaves exactly one record here, set at the
 * place that knows the cause (the module that owns the failing resource
 * translates SQLite, libnbd, qemu tool and errno failures into an
 * rp_errcode). The table in refpoint_errors.def gives each code its
 * Hyper-V return code, CIM code, exit code and sentence. */
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local rp_error last_error;

static const struct {
  const char *name;
  uint32_t hv, cim_a, cim_status;
  int exit_code;
  const char *sentence;
} table[] = {
#define RP_ERR(name, hv, cimA, cimst, exitc, sentence) {#name, hv, cimA, cimst, exitc, sentence},
#include "refpoint_errors.def"
#undef RP_ERR
};

static unsigned idx(rp_errcode c)
{
  return (unsigned)c < RP_E__COUNT ? (unsigned)c : (unsigned)RP_E_FAILED;
}

const rp_error *rp_last_error(void)
{
  return &last_error;
}

uint32_t rp_err_hyperv_code(rp_errcode c)
{
  return table[idx(c)].hv;
}
uint32_t rp_err_cim_code(rp_errcode c)
{
  return table[idx(c)].cim_a;
}
uint32_t rp_err_cim_status(rp_errcode c)
{
  return table[idx(c)].cim_status;
}
int rp_err_exit_code(rp_errcode c)
{
  return table[idx(c)].exit_code;
}
const char *rp_err_sentence(rp_errcode c)
{
  return table[idx(c)].sentence;
}
const char *rp_err_name(rp_errcode c)
{
  return table[idx(c)].name;
}

void rp_err_clear(void)
{
  last_error.code = RP_E_OK;
  last_error.sys_errno = 0;
  last_error.message[0] = '\0';
}

int rp_err_set(rp_errcode code, int sys_errno, const char *fmt, ...)
{
  va_list ap;
  last_error.code = code;
  last_error.sys_errno = sys_errno;
  va_start(ap, fmt);
  vsnprintf(last_error.message, sizeof last_error.message, fmt, ap);
  va_end(ap);
  if (sys_errno) {
    size_t n = strlen(last_error.message);
    snprintf(last_error.message + n, sizeof last_error.message - n, ": %s", strerror(sys_errno));
  }
  return -1;
}

int rp_err_prefix(const char *fmt, ...)
{
  char pre[256], old[sizeof last_error.message];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(pre, sizeof pre, fmt, ap);
  va_end(ap);
  memcpy(old, last_error.message, sizeof old);
  size_t n = strlen(pre);
  if (n + 2 < sizeof last_error.message) {
    memcpy(last_error.message, pre, n);
    memcpy(last_error.message + n, ": ", 2);
    size_t room = sizeof last_error.message - n - 3;
    size_t ol = strnlen(old, room);
    memcpy(last_error.message + n + 2, old, ol);
    last_error.message[n + 2 + ol] = '\0';
  }
  return -1;
}

rp_errcode rp_err_from_errno(int e)
{
  switch (e) {
  case ENOSPC:
  case EDQUOT:
    return RP_E_NO_SPACE;
  case EACCES:
  case EPERM:
  case EROFS:
    return RP_E_ACCESS_DENIED;
  case ENOMEM:
    return RP_E_NO_MEMORY;
  case ENOENT:
  case ENOTDIR:
    return RP_E_INVALID_PARAMETER;
  default:
    return RP_E_FAILED;
  }
}
