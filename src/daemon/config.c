/* config.c — the refpointd.conf parser (see config.h). */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

int rpd_config_parse(const char *text, size_t len, rpd_conf_fn fn, void *user, char err[256])
{
  if (len > RPD_CONF_MAX) {
    snprintf(err, 256, "config file larger than %u bytes", RPD_CONF_MAX);
    return -1;
  }
  if (memchr(text, '\0', len)) {
    snprintf(err, 256, "config file contains a NUL byte");
    return -1;
  }
  size_t pos = 0;
  int lineno = 0;
  char line[RPD_CONF_LINE + 1];
  while (pos < len) {
    lineno++;
    const char *nl = memchr(text + pos, '\n', len - pos);
    size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
    if (n > RPD_CONF_LINE) {
      snprintf(err, 256, "line %d: longer than %u characters", lineno, RPD_CONF_LINE);
      return -1;
    }
    memcpy(line, text + pos, n);
    line[n] = '\0';
    pos += n + (nl ? 1 : 0);
    char *s = line;
    while (isspace((unsigned char)*s))
      s++;
    size_t l = strlen(s);
    while (l && isspace((unsigned char)s[l - 1]))
      s[--l] = '\0';
    if (!*s || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      snprintf(err, 256, "line %d: expected 'key = value'", lineno);
      return -1;
    }
    char *k = s, *v = eq + 1;
    *eq = '\0';
    size_t kl = strlen(k);
    while (kl && isspace((unsigned char)k[kl - 1]))
      k[--kl] = '\0';
    while (isspace((unsigned char)*v))
      v++;
    if (!kl) {
      snprintf(err, 256, "line %d: no key before '='", lineno);
      return -1;
    }
    for (char *c = k; *c; c++)
      if (!(isalnum((unsigned char)*c) || *c == '-' || *c == '_')) {
        snprintf(err, 256, "line %d: bad character in key", lineno);
        return -1;
      }
    if (!*v) {
      snprintf(err, 256, "line %d: %.64s has no value", lineno, k);
      return -1;
    }
    for (char *c = v; *c; c++)
      if ((unsigned char)*c < 0x20 && *c != '\t') {
        snprintf(err, 256, "line %d: control character in the value", lineno);
        return -1;
      }
    int rc = fn(user, k, v, lineno);
    if (rc)
      return rc;
  }
  return 0;
}
