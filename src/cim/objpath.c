/* objpath.c — CIM object paths as WMI, wbemcli and DSP0207 clients write
 * them (see cim.h). Untrusted input: bounded, every character checked. */
#include "cim_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void *xcalloc(size_t n, size_t m)
{
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p)
    abort();
  return p;
}



void cim_objpath_free(cim_objpath *p)
{
  if (!p)
    return;
  for (size_t i = 0; i < p->n_keys; i++) {
    free(p->keys[i].name);
    free(p->keys[i].value);
  }
  free(p->keys);
  free(p->host);
  free(p->nspace);
  free(p->classname);
  free(p);
}

/* Sets the error (while p is still alive: the message may quote it), then
 * frees p. */
static void *fail(cim_objpath *p, char *err, const char *fmt, ...)
{
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, CIM_ERRLEN, fmt, ap);
  va_end(ap);
  cim_objpath_free(p);
  return NULL;
}

static bool ident_start(char c)
{
  return isalpha((unsigned char)c) || c == '_';
}
static bool ident_char(char c)
{
  return isalnum((unsigned char)c) || c == '_';
}

/* Folds '\' to '/', drops empty segments; returns NULL for an empty or bad
 * namespace. */
static char *norm_ns(const char *s, size_t n)
{
  char *r = xcalloc(n + 1, 1);
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i] == '\\' ? '/' : s[i];
    if (c == '/' && (o == 0 || r[o - 1] == '/'))
      continue;
    if (!(isalnum((unsigned char)c) || c == '_' || c == '/' || c == '-' || c == '.')) {
      free(r);
      return NULL;
    }
    r[o++] = c;
  }
  while (o > 0 && r[o - 1] == '/')
    o--;
  r[o] = '\0';
  if (o == 0) {
    free(r);
    return NULL;
  }
  return r;
}

cim_objpath *cim_objpath_parse(const char *s, size_t len, char err[CIM_ERRLEN])
{
  if (!s)
    return cim_seterr(err, "no object path");
  if (len > CIM_MAX_TEXT)
    return cim_seterr(err, "object path longer than %u bytes", CIM_MAX_TEXT);
  if (memchr(s, '\0', len))
    return cim_seterr(err, "object path contains a NUL byte");
  while (len && isspace((unsigned char)*s))
    s++, len--;
  while (len && isspace((unsigned char)s[len - 1]))
    len--;
  /* strip a URL scheme */
  const char *sch = NULL;
  for (size_t i = 0; i + 2 < len && i < 16; i++)
    if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
      sch = s + i;
      break;
    }
  if (sch) {
    for (const char *q = s; q < sch; q++)
      if (!isalpha((unsigned char)*q))
        sch = NULL;
  }
  if (sch) {
    len -= (size_t)(sch + 1 - s);
    s = sch + 1; /* keep the "//" so the host rule below applies */
  }
  /* the class starts after the last ':' that precedes the first '.', '='
   * or '"' after the host part (host names may hold dots and colons) */
  size_t colon = (size_t)-1, stop;
  {
    size_t i = 0;
    bool in_prefix = len >= 2 && (s[0] == '\\' || s[0] == '/') && (s[1] == '\\' || s[1] == '/');
    if (in_prefix) {
      /* host ends at the next separator */
      i = 2;
      while (i < len && s[i] != '\\' && s[i] != '/')
        i++;
    } else {
      /* HOST:PORT/ns form: a first segment with ':' followed by '/' */
      size_t sl = 0;
      while (sl < len && s[sl] != '/' && s[sl] != '"' && s[sl] != '=')
        sl++;
      if (sl < len && s[sl] == '/' && memchr(s, ':', sl))
        i = sl;
    }
    stop = len;
    for (size_t k = i; k < len; k++)
      if (s[k] == '.' || s[k] == '=' || s[k] == '"') {
        stop = k;
        break;
      }
    for (size_t k = i; k < stop; k++)
      if (s[k] == ':')
        colon = k;
  }
  cim_objpath *p = xcalloc(1, sizeof *p);
  size_t pos = 0;
  if (colon != (size_t)-1) {
    const char *pre = s;
    size_t pn = colon;
    if (pn >= 2 && (pre[0] == '\\' || pre[0] == '/') && (pre[1] == '\\' || pre[1] == '/')) {
      size_t h = 2;
      while (h < pn && pre[h] != '\\' && pre[h] != '/')
        h++;
      if (h == 2) {
        return fail(p, err, "empty host name");
      }
      p->host = cim_xstrndup(pre + 2, h - 2);
      pre += h;
      pn -= h;
    } else {
      size_t sl = 0;
      while (sl < pn && pre[sl] != '/')
        sl++;
      if (sl < pn && memchr(pre, ':', sl)) {
        p->host = cim_xstrndup(pre, sl);
        pre += sl;
        pn -= sl;
      }
    }
    if (p->host)
      for (char *c = p->host; *c; c++)
        if (!(isalnum((unsigned char)*c) || strchr(".-_:[]%", *c))) {
          return fail(p, err, "bad character in host name");
        }
    p->nspace = norm_ns(pre, pn);
    if (!p->nspace) {
      return fail(p, err, "bad namespace");
    }
    pos = colon + 1;
  }
  /* class */
  if (pos >= len || !ident_start(s[pos])) {
    return fail(p, err, "expected a class name at offset %zu", pos);
  }
  size_t c0 = pos;
  while (pos < len && ident_char(s[pos]))
    pos++;
  if (pos - c0 > 256) {
    return fail(p, err, "class name too long");
  }
  p->classname = cim_xstrndup(s + c0, pos - c0);
  if (pos == len)
    return p;
  if (s[pos] == '=' && pos + 2 == len && s[pos + 1] == '@')
    return p; /* singleton */
  if (s[pos] != '.') {
    return fail(p, err, "unexpected '%c' after the class name", s[pos]);
  }
  pos++;
  for (;;) {
    if (p->n_keys == CIM_MAX_KEYS) {
      return fail(p, err, "more than %d keys", CIM_MAX_KEYS);
    }
    while (pos < len && s[pos] == ' ')
      pos++;
    size_t k0 = pos;
    if (pos >= len || !ident_start(s[pos])) {
      return fail(p, err, "expected a key name at offset %zu", pos);
    }
    while (pos < len && ident_char(s[pos]))
      pos++;
    size_t kn = pos - k0;
    while (pos < len && s[pos] == ' ')
      pos++;
    if (pos >= len || s[pos] != '=') {
      return fail(p, err, "expected '=' after key %.*s", (int)(kn > 64 ? 64 : kn), s + k0);
    }
    pos++;
    while (pos < len && s[pos] == ' ')
      pos++;
    p->keys = realloc(p->keys, (p->n_keys + 1) * sizeof *p->keys);
    if (!p->keys)
      abort();
    cim_key *k = &p->keys[p->n_keys++];
    k->name = cim_xstrndup(s + k0, kn);
    k->value = NULL;
    if (pos < len && s[pos] == '"') {
      pos++;
      char *v = xcalloc(len - pos + 1, 1);
      size_t o = 0;
      bool closed = false;
      while (pos < len) {
        char c = s[pos++];
        if (c == '\\' && pos < len && (s[pos] == '\\' || s[pos] == '"')) {
          v[o++] = s[pos++];
          continue;
        }
        if (c == '"') {
          closed = true;
          break;
        }
        v[o++] = c;
      }
      v[o] = '\0';
      k->value = v;
      k->type = CIM_K_STRING;
      if (!closed) {
        return fail(p, err, "unterminated quoted value of key %s", k->name);
      }
    } else {
      size_t v0 = pos;
      while (pos < len && s[pos] != ',')
        pos++;
      size_t vn = pos - v0;
      while (vn && s[v0 + vn - 1] == ' ')
        vn--;
      if (vn == 0) {
        return fail(p, err, "key %s has no value", k->name);
      }
      k->value = cim_xstrndup(s + v0, vn);
      if (!strcasecmp(k->value, "TRUE") || !strcasecmp(k->value, "FALSE"))
        k->type = CIM_K_BOOLEAN;
      else {
        char *end;
        strtod(k->value, &end);
        k->type = (*end == '\0' && (isdigit((unsigned char)k->value[0]) || k->value[0] == '-' ||
                                    k->value[0] == '+'))
                      ? CIM_K_NUMBER
                      : CIM_K_STRING;
      }
    }
    while (pos < len && s[pos] == ' ')
      pos++;
    if (pos == len)
      return p;
    if (s[pos] != ',') {
      return fail(p, err, "expected ',' or the end after key %s", k->name);
    }
    pos++;
  }
}

const char *cim_objpath_key(const cim_objpath *p, const char *name)
{
  for (size_t i = 0; p && i < p->n_keys; i++)
    if (!strcasecmp(p->keys[i].name, name))
      return p->keys[i].value;
  return NULL;
}

char *cim_objpath_format(const cim_objpath *p)
{
  size_t cap = 64 + (p->nspace ? strlen(p->nspace) : 0) + strlen(p->classname);
  for (size_t i = 0; i < p->n_keys; i++)
    cap += strlen(p->keys[i].name) + 2 * strlen(p->keys[i].value) + 8;
  char *r = xcalloc(cap, 1);
  size_t o = 0;
  if (p->nspace)
    o += (size_t)sprintf(r + o, "%s:", p->nspace);
  o += (size_t)sprintf(r + o, "%s", p->classname);
  for (size_t i = 0; i < p->n_keys; i++) {
    o += (size_t)sprintf(r + o, "%c%s=", i ? ',' : '.', p->keys[i].name);
    const cim_key *k = &p->keys[i];
    if (k->type == CIM_K_STRING || k->type == CIM_K_REF) {
      r[o++] = '"';
      for (const char *c = k->value; *c; c++) {
        if (*c == '"' || *c == '\\')
          r[o++] = '\\';
        r[o++] = *c;
      }
      r[o++] = '"';
    } else
      o += (size_t)sprintf(r + o, "%s", k->value);
  }
  r[o] = '\0';
  return r;
}
