/* instance.c — embedded instances (string parameters such as
 * ExportSettingData): CIM-XML <INSTANCE> text, parsed with libxml2 with
 * DTDs, entities and network access refused, and MOF "instance of" text,
 * parsed by hand. Both give the same cim_instance. */
#include "cim_internal.h"

#include <ctype.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>




void cim_instance_free(cim_instance *in)
{
  if (!in)
    return;
  for (size_t i = 0; i < in->n_props; i++) {
    cim_prop *p = &in->props[i];
    free(p->name);
    free(p->type);
    for (size_t k = 0; k < p->n_values; k++)
      free(p->values[k]);
    free(p->values);
  }
  free(in->props);
  free(in->classname);
  free(in);
}

const cim_prop *cim_instance_prop(const cim_instance *in, const char *name)
{
  for (size_t i = 0; in && i < in->n_props; i++)
    if (!strcasecmp(in->props[i].name, name))
      return &in->props[i];
  return NULL;
}

static bool valid_name(const char *s)
{
  if (!s || !*s || strlen(s) > 256 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
    return false;
  for (const char *c = s; *c; c++)
    if (!(isalnum((unsigned char)*c) || *c == '_'))
      return false;
  return true;
}

static cim_prop *add_prop(cim_instance *in, const char *name, char *err)
{
  if (!valid_name(name))
    return cim_seterr(err, "bad property name");
  if (in->n_props == CIM_MAX_PROPS)
    return cim_seterr(err, "more than %d properties", CIM_MAX_PROPS);
  for (size_t i = 0; i < in->n_props; i++)
    if (!strcasecmp(in->props[i].name, name))
      return cim_seterr(err, "property %s given twice", name);
  in->props = cim_xrealloc(in->props, (in->n_props + 1) * sizeof *in->props);
  cim_prop *p = &in->props[in->n_props++];
  memset(p, 0, sizeof *p);
  p->name = cim_xstrdup(name);
  p->is_null = true;
  return p;
}

static bool add_value(cim_prop *p, char *v, char *err)
{
  if (p->n_values == CIM_MAX_ARRAY) {
    free(v);
    cim_seterr(err, "array %s longer than %d", p->name, CIM_MAX_ARRAY);
    return false;
  }
  p->values = cim_xrealloc(p->values, (p->n_values + 1) * sizeof(char *));
  p->values[p->n_values++] = v;
  p->is_null = false;
  return true;
}

/* ---- CIM-XML --------------------------------------------------------------- */




/* INSTANCENAME (possibly inside INSTANCEPATH/LOCALINSTANCEPATH) as path text */
static char *ref_text(xmlNode *vr, int depth)
{
  if (!vr || depth > 8)
    return NULL;
  if (cim_xml_is(vr, "INSTANCENAME")) {
    char *cls = cim_xml_attr(vr, "CLASSNAME");
    if (!cls)
      return NULL;
    size_t cap = strlen(cls) + 2, o = 0;
    char *r = cim_xrealloc(NULL, cap);
    o += (size_t)snprintf(r, cap, "%s", cls);
    free(cls);
    int nk = 0;
    for (xmlNode *k = vr->children; k; k = k->next) {
      if (!cim_xml_is(k, "KEYBINDING"))
        continue;
      char *kn = cim_xml_attr(k, "NAME");
      char *kv = NULL;
      for (xmlNode *v = k->children; v; v = v->next)
        if (cim_xml_is(v, "KEYVALUE") && !kv) /* the first one counts */
          kv = cim_xml_text(v);
      if (kn && kv && valid_name(kn)) {
        size_t need = o + strlen(kn) + 2 * strlen(kv) + 8;
        r = cim_xrealloc(r, need);
        o += (size_t)sprintf(r + o, "%c%s=\"", nk++ ? ',' : '.', kn);
        for (const char *c = kv; *c; c++) {
          if (*c == '"' || *c == '\\')
            r[o++] = '\\';
          r[o++] = *c;
        }
        r[o++] = '"';
        r[o] = '\0';
      }
      free(kn);
      free(kv);
    }
    return r;
  }
  for (xmlNode *c = vr->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE) {
      char *r = ref_text(c, depth + 1);
      if (r)
        return r;
    }
  return NULL;
}

static xmlNode *find_instance(xmlNode *n, int depth)
{
  for (; n && depth < CIM_MAX_DEPTH; n = n->next) {
    if (cim_xml_is(n, "INSTANCE"))
      return n;
    xmlNode *f = find_instance(n->children, depth + 1);
    if (f)
      return f;
  }
  return NULL;
}

cim_instance *cim_instance_parse_xml(const char *s, size_t len, char err[CIM_ERRLEN])
{
  if (!s || len == 0)
    return cim_seterr(err, "empty embedded instance");
  if (len > CIM_MAX_TEXT)
    return cim_seterr(err, "embedded instance longer than %u bytes", CIM_MAX_TEXT);
  /* refuse DTDs before the parser sees them: no entity can be declared, so
   * none can be expanded (billion laughs) or resolved (XXE) */
  if (!cim_xml_prescan(s, len, err))
    return NULL;
  xmlDoc *doc = xmlReadMemory(s, (int)len, "embedded-instance.xml", "UTF-8",
                              CIM_XML_PARSE_OPTS | XML_PARSE_NOCDATA);
  if (!doc) {
    const xmlError *e = xmlGetLastError();
    return cim_seterr(err, "malformed XML%s%s", e && e->message ? ": " : "",
                  e && e->message ? e->message : "");
  }
  cim_instance *in = NULL;
  if (doc->intSubset || doc->extSubset) {
    cim_seterr(err, "DOCTYPE is not accepted");
    goto out;
  }
  xmlNode *inst = find_instance(xmlDocGetRootElement(doc), 0);
  if (!inst) {
    cim_seterr(err, "no INSTANCE element");
    goto out;
  }
  in = calloc(1, sizeof *in);
  if (!in)
    abort();
  in->classname = cim_xml_attr(inst, "CLASSNAME");
  if (!valid_name(in->classname)) {
    cim_seterr(err, "INSTANCE has no valid CLASSNAME");
    goto fail;
  }
  for (xmlNode *p = inst->children; p; p = p->next) {
    bool arr = cim_xml_is(p, "PROPERTY.ARRAY"), ref = cim_xml_is(p, "PROPERTY.REFERENCE");
    if (!cim_xml_is(p, "PROPERTY") && !arr && !ref)
      continue;
    char *name = cim_xml_attr(p, "NAME");
    if (name && name[0] == '_' && name[1] == '_') { /* WMI system properties */
      free(name);
      continue;
    }
    cim_prop *cp = add_prop(in, name, err);
    free(name);
    if (!cp)
      goto fail;
    cp->type = ref ? cim_xstrdup("reference") : cim_xml_attr(p, "TYPE");
    cp->is_array = arr;
    for (xmlNode *v = p->children; v; v = v->next) {
      if (!arr && cim_xml_is(v, "VALUE")) {
        if (!add_value(cp, cim_xml_text(v), err))
          goto fail;
      } else if (arr && cim_xml_is(v, "VALUE.ARRAY")) {
        cp->is_null = false;
        for (xmlNode *e = v->children; e; e = e->next)
          if (cim_xml_is(e, "VALUE") && !add_value(cp, cim_xml_text(e), err))
            goto fail;
      } else if (ref && cim_xml_is(v, "VALUE.REFERENCE")) {
        char *t = ref_text(v, 0);
        if (!t) {
          cim_seterr(err, "reference property %s has no INSTANCENAME", cp->name);
          goto fail;
        }
        if (!add_value(cp, t, err))
          goto fail;
      }
    }
  }
  goto out;
fail:
  cim_instance_free(in);
  in = NULL;
out:
  xmlFreeDoc(doc);
  return in;
}

/* ---- MOF ------------------------------------------------------------------- */

typedef struct mof {
  const char *s;
  size_t len, pos;
  char *err;
} mof;

static void mof_skip(mof *m)
{
  for (;;) {
    while (m->pos < m->len && isspace((unsigned char)m->s[m->pos]))
      m->pos++;
    if (m->pos + 1 < m->len && m->s[m->pos] == '/' && m->s[m->pos + 1] == '/') {
      while (m->pos < m->len && m->s[m->pos] != '\n')
        m->pos++;
    } else if (m->pos + 1 < m->len && m->s[m->pos] == '/' && m->s[m->pos + 1] == '*') {
      const char *e = NULL;
      for (size_t i = m->pos + 2; i + 1 < m->len; i++)
        if (m->s[i] == '*' && m->s[i + 1] == '/') {
          e = m->s + i;
          break;
        }
      m->pos = e ? (size_t)(e - m->s) + 2 : m->len;
    } else if (m->pos < m->len && m->s[m->pos] == '#') { /* #pragma lines */
      while (m->pos < m->len && m->s[m->pos] != '\n')
        m->pos++;
    } else
      return;
  }
}

static bool mof_word(mof *m, const char *w)
{
  mof_skip(m);
  size_t n = strlen(w);
  if (m->pos + n <= m->len && !strncasecmp(m->s + m->pos, w, n) &&
      (m->pos + n == m->len || !(isalnum((unsigned char)m->s[m->pos + n]) || m->s[m->pos + n] == '_'))) {
    m->pos += n;
    return true;
  }
  return false;
}

static bool mof_char(mof *m, char c)
{
  mof_skip(m);
  if (m->pos < m->len && m->s[m->pos] == c) {
    m->pos++;
    return true;
  }
  return false;
}

static char *mof_ident(mof *m)
{
  mof_skip(m);
  size_t p0 = m->pos;
  if (p0 >= m->len || !(isalpha((unsigned char)m->s[p0]) || m->s[p0] == '_'))
    return NULL;
  while (m->pos < m->len && (isalnum((unsigned char)m->s[m->pos]) || m->s[m->pos] == '_'))
    m->pos++;
  if (m->pos - p0 > 256)
    return NULL;
  char *r = malloc(m->pos - p0 + 1);
  if (!r)
    abort();
  memcpy(r, m->s + p0, m->pos - p0);
  r[m->pos - p0] = '\0';
  return r;
}

/* one value: a string (adjacent strings concatenate), a number, TRUE, FALSE;
 * NULL returns "" with *is_null set */
static char *mof_scalar(mof *m, bool *is_null)
{
  mof_skip(m);
  *is_null = false;
  if (m->pos < m->len && m->s[m->pos] == '"') {
    size_t cap = 64, o = 0;
    char *r = malloc(cap);
    if (!r)
      abort();
    while (m->pos < m->len && m->s[m->pos] == '"') {
      m->pos++;
      for (;;) {
        if (m->pos >= m->len) {
          free(r);
          cim_seterr(m->err, "unterminated string");
          return NULL;
        }
        char c = m->s[m->pos++];
        if (c == '"')
          break;
        if (c == '\\') {
          if (m->pos >= m->len) {
            free(r);
            cim_seterr(m->err, "unterminated string");
            return NULL;
          }
          char e = m->s[m->pos++];
          c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == '0' ? '\0' : e;
          if (c == '\0') {
            free(r);
            cim_seterr(m->err, "NUL character in a string");
            return NULL;
          }
        }
        if (o + 2 > cap) {
          cap *= 2;
          r = cim_xrealloc(r, cap);
        }
        r[o++] = c;
      }
      mof_skip(m);
    }
    r[o] = '\0';
    return r;
  }
  if (mof_word(m, "NULL")) {
    *is_null = true;
    return cim_xstrdup("");
  }
  if (mof_word(m, "TRUE"))
    return cim_xstrdup("TRUE");
  if (mof_word(m, "FALSE"))
    return cim_xstrdup("FALSE");
  size_t p0 = m->pos;
  while (m->pos < m->len && (isalnum((unsigned char)m->s[m->pos]) || strchr("+-._", m->s[m->pos])))
    m->pos++;
  if (m->pos == p0 || m->pos - p0 > 64) {
    cim_seterr(m->err, "expected a value at offset %zu", p0);
    return NULL;
  }
  char *r = malloc(m->pos - p0 + 1);
  if (!r)
    abort();
  memcpy(r, m->s + p0, m->pos - p0);
  r[m->pos - p0] = '\0';
  if (!(isdigit((unsigned char)r[0]) || r[0] == '-' || r[0] == '+' || r[0] == '.')) {
    cim_seterr(m->err, "unexpected word '%.32s' where a value belongs", r);
    free(r);
    return NULL;
  }
  return r;
}

cim_instance *cim_instance_parse_mof(const char *s, size_t len, char err[CIM_ERRLEN])
{
  if (!s || len == 0)
    return cim_seterr(err, "empty embedded instance");
  if (len > CIM_MAX_TEXT)
    return cim_seterr(err, "embedded instance longer than %u bytes", CIM_MAX_TEXT);
  if (memchr(s, '\0', len))
    return cim_seterr(err, "embedded instance contains a NUL byte");
  mof m = {s, len, 0, err};
  if (!mof_word(&m, "instance") || !mof_word(&m, "of"))
    return cim_seterr(err, "expected 'instance of'");
  cim_instance *in = calloc(1, sizeof *in);
  if (!in)
    abort();
  in->classname = mof_ident(&m);
  if (!in->classname) {
    cim_seterr(err, "expected a class name after 'instance of'");
    goto fail;
  }
  if (mof_word(&m, "as")) { /* alias: as $name */
    mof_skip(&m);
    if (m.pos < m.len && m.s[m.pos] == '$')
      m.pos++;
    free(mof_ident(&m));
  }
  if (!mof_char(&m, '{')) {
    cim_seterr(err, "expected '{' after the class name");
    goto fail;
  }
  while (!mof_char(&m, '}')) {
    /* qualifiers: [Key, ...] */
    if (mof_char(&m, '[')) {
      while (m.pos < m.len && m.s[m.pos] != ']')
        m.pos++;
      if (!mof_char(&m, ']')) {
        cim_seterr(err, "unterminated qualifier list");
        goto fail;
      }
    }
    char *name = mof_ident(&m);
    if (!name) {
      cim_seterr(err, "expected a property name or '}' at offset %zu", m.pos);
      goto fail;
    }
    cim_prop *p = add_prop(in, name, err);
    free(name);
    if (!p)
      goto fail;
    if (!mof_char(&m, '=')) {
      cim_seterr(err, "expected '=' after property %s", p->name);
      goto fail;
    }
    if (mof_char(&m, '{')) {
      p->is_array = true;
      p->is_null = false;
      if (!mof_char(&m, '}')) {
        do {
          bool nul;
          char *v = mof_scalar(&m, &nul);
          if (!v || !add_value(p, v, err))
            goto fail;
        } while (mof_char(&m, ','));
        if (!mof_char(&m, '}')) {
          cim_seterr(err, "expected '}' to end array %s", p->name);
          goto fail;
        }
      }
    } else {
      bool nul;
      char *v = mof_scalar(&m, &nul);
      if (!v)
        goto fail;
      if (nul)
        free(v);
      else if (!add_value(p, v, err))
        goto fail;
    }
    if (!mof_char(&m, ';')) {
      cim_seterr(err, "expected ';' after property %s", p->name);
      goto fail;
    }
  }
  mof_char(&m, ';');
  mof_skip(&m);
  if (m.pos != m.len) {
    cim_seterr(err, "unexpected text after the instance at offset %zu", m.pos);
    goto fail;
  }
  return in;
fail:
  cim_instance_free(in);
  return NULL;
}

cim_instance *cim_instance_parse(const char *s, size_t len, char err[CIM_ERRLEN])
{
  size_t i = 0;
  while (s && i < len && isspace((unsigned char)s[i]))
    i++;
  if (s && i < len && s[i] == '<')
    return cim_instance_parse_xml(s, len, err);
  return cim_instance_parse_mof(s, len, err);
}
