/* cim.h — parsers for untrusted CIM text (the wire layer of refpointd):
 * object paths, WQL queries, and embedded instances as CIM-XML <INSTANCE>
 * text or MOF "instance of" text. Nothing here touches the engine.
 *
 * Conventions: parsers take (text, length) and never read past it; they
 * return NULL (or -1) on bad input and write a one-line reason into err
 * (CIM_ERRLEN bytes). Every input is bounded (CIM_MAX_*); nesting is
 * limited; nothing is fetched from the network or the file system (XML
 * external entities and DTDs are refused, never resolved). Results are
 * owned by the caller and freed with the matching _free (NULL is fine). */
#ifndef RP_CIM_H
#define RP_CIM_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIM_ERRLEN 256
#define CIM_MAX_TEXT (1u << 20)  /* bytes of one path, query or instance */
#define CIM_MAX_KEYS 64          /* keys of a path */
#define CIM_MAX_PROPS 512        /* properties of an instance */
#define CIM_MAX_ARRAY 65536      /* elements of one array value */
#define CIM_MAX_DEPTH 64         /* nesting of WQL expressions / XML */

/* ---- object paths ------------------------------------------------------- */

typedef enum cim_ktype { CIM_K_STRING, CIM_K_NUMBER, CIM_K_BOOLEAN, CIM_K_REF } cim_ktype;

typedef struct cim_key {
  char *name;
  char *value; /* unescaped text */
  cim_ktype type;
} cim_key;

typedef struct cim_objpath {
  char *host;      /* NULL when absent */
  char *nspace;    /* "root/virtualization/v2" ('\' folded to '/'), NULL when absent */
  char *classname;
  size_t n_keys;
  cim_key *keys;
} cim_objpath;

/* Accepts \\HOST\ns\ns:Class.K="v",K2=1  //HOST/ns:Class...  HOST:PORT/ns:Class...
 * ns:Class...  Class.K="v"  Class=@ (singleton, no keys). Inside quoted values
 * \" and \\ are escapes (WMI doubles backslashes). */
cim_objpath *cim_objpath_parse(const char *s, size_t len, char err[CIM_ERRLEN]);
void cim_objpath_free(cim_objpath *p);
const char *cim_objpath_key(const cim_objpath *p, const char *name); /* case-insensitive */
/* Canonical text: ns:Class.K="v",... (backslashes and quotes escaped). Caller frees. */
char *cim_objpath_format(const cim_objpath *p);

/* ---- embedded instances -------------------------------------------------- */

typedef struct cim_prop {
  char *name;
  char *type;      /* CIM type from the text, or NULL (MOF has none) */
  bool is_array;
  bool is_null;    /* no value given */
  size_t n_values; /* 1 for a scalar with a value */
  char **values;   /* text of each value; strings unescaped */
} cim_prop;

typedef struct cim_instance {
  char *classname;
  size_t n_props;
  cim_prop *props;
} cim_instance;

/* <INSTANCE CLASSNAME=...> in CIM DTD 2.0 or WMI DTD 2.0 flavour (an
 * optional <?xml?> prolog; PROPERTY, PROPERTY.ARRAY, PROPERTY.REFERENCE;
 * QUALIFIERs ignored). Any DOCTYPE or entity declaration is refused. */
cim_instance *cim_instance_parse_xml(const char *s, size_t len, char err[CIM_ERRLEN]);
/* instance of Class { Prop = value; Arr = {"a", "b"}; }; (UTF-8; strings
 * with C escapes; numbers, TRUE/FALSE, NULL; // and block comments). */
cim_instance *cim_instance_parse_mof(const char *s, size_t len, char err[CIM_ERRLEN]);
/* Either format, chosen by the first non-blank character ('<' = XML). */
cim_instance *cim_instance_parse(const char *s, size_t len, char err[CIM_ERRLEN]);
void cim_instance_free(cim_instance *i);
const cim_prop *cim_instance_prop(const cim_instance *i, const char *name); /* case-insensitive */

/* ---- WQL ----------------------------------------------------------------- */

typedef struct cim_query cim_query;

typedef enum cim_qkind { CIM_Q_SELECT, CIM_Q_ASSOCIATORS } cim_qkind;

/* SELECT * | P[, P]... FROM Class [WHERE expr]   with =, <>, !=, <, >, <=,
 * >=, LIKE (% _ [set]), AND, OR, NOT, IS [NOT] NULL, parentheses;
 * ASSOCIATORS OF {path} [WHERE ResultClass = C | AssocClass = C | Role = R |
 * ResultRole = R | ClassDefsOnly]... Keywords are case-insensitive. */
cim_query *cim_query_parse(const char *s, size_t len, char err[CIM_ERRLEN]);
void cim_query_free(cim_query *q);
cim_qkind cim_query_kind(const cim_query *q);
const char *cim_query_class(const cim_query *q);      /* FROM class (SELECT) */
size_t cim_query_n_props(const cim_query *q);         /* 0 = * */
const char *cim_query_prop(const cim_query *q, size_t i);
const cim_objpath *cim_query_object(const cim_query *q); /* ASSOCIATORS OF */
const char *cim_query_assoc_opt(const cim_query *q, const char *name); /* ResultClass... */

/* Property lookup for evaluation: the value as text and whether it is a
 * number, a boolean, NULL; return false when the property is unknown. */
typedef struct cim_value {
  const char *text; /* NULL for NULL */
  enum { CIM_V_STRING, CIM_V_NUMBER, CIM_V_BOOLEAN } type;
} cim_value;
typedef bool (*cim_getter)(void *user, const char *prop, cim_value *out);
/* 1 = matches, 0 = does not, -1 = error (err says why: unknown property,
 * type mismatch). A query without WHERE matches everything. */
int cim_query_match(const cim_query *q, cim_getter get, void *user, char err[CIM_ERRLEN]);
/* LIKE pattern matching on its own (exposed for tests). */
bool cim_like(const char *text, const char *pattern);
#endif
