/* config.h — refpointd.conf: "key = value" lines, '#' comments (see
 * refpointd.conf(5)). The parser only splits and validates the shape; the
 * daemon decides what each key means. */
#ifndef RP_DCONFIG_H
#define RP_DCONFIG_H
#include <stddef.h>

#define RPD_CONF_MAX (256u << 10) /* bytes */
#define RPD_CONF_LINE 4096

/* Called for each setting, in order; return non-zero to stop with that code. */
typedef int (*rpd_conf_fn)(void *user, const char *key, const char *value, int line);
/* 0, or -1 with err set ("line N: ...") on a malformed file, or what fn returned. */
int rpd_config_parse(const char *text, size_t len, rpd_conf_fn fn, void *user, char err[256]);
#endif
