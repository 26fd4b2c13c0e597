/* wql.c — the WQL subset of ExecQuery (see cim.h): a tokenizer, a
 * recursive-descent parser with a depth limit, and an evaluator over a
 * property getter. String comparisons are case-insensitive, as in WMI. */
#include "cim_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum tok { T_END, T_IDENT, T_STRING, T_NUMBER, T_LP, T_RP, T_COMMA, T_STAR, T_OP, T_LBRACE_PATH };

typedef struct token {
  enum tok t;
  char *text; /* identifier, unescaped string, number, operator, {path} */
} token;

typedef enum nkind { N_AND, N_OR, N_NOT, N_CMP, N_LIKE, N_ISNULL } nkind;

typedef struct node {
  nkind k;
  struct node *a, *b;
  char *prop;
  char *op;      /* "=", "<>", "<", ">", "<=", ">=" */
  char *lit;     /* NULL literal = NULL */
  enum tok ltype;
  bool negate;   /* IS NOT NULL, NOT LIKE */
} node;

struct cim_query {
  cim_qkind kind;
  char *cls;
  size_t n_props;
  char **props;
  node *where;
  cim_objpath *obj;
  char *assoc_names[8], *assoc_vals[8];
  size_t n_assoc;
};

typedef struct lexer {
  token *v;
  size_t n, pos;
  char *err;
} lexer;



static void push(lexer *L, enum tok t, char *text)
{
  L->v = realloc(L->v, (L->n + 1) * sizeof *L->v);
  if (!L->v)
    abort();
  L->v[L->n++] = (token){t, text};
}

static void free_tokens(lexer *L)
{
  for (size_t i = 0; i < L->n; i++)
    free(L->v[i].text);
  free(L->v);
}

static bool lex(lexer *L, const char *s, size_t len)
{
  size_t i = 0;
  while (i < len) {
    char c = s[i];
    if (isspace((unsigned char)c)) {
      i++;
    } else if (isalpha((unsigned char)c) || c == '_') {
      size_t j = i;
      while (j < len && (isalnum((unsigned char)s[j]) || s[j] == '_'))
        j++;
      if (j - i > 256) {
        cim_seterr(L->err, "identifier too long");
        return false;
      }
      push(L, T_IDENT, cim_xstrndup(s + i, j - i));
      i = j;
    } else if (isdigit((unsigned char)c) || ((c == '-' || c == '+') && i + 1 < len && isdigit((unsigned char)s[i + 1]))) {
      size_t j = i + 1;
      while (j < len && (isdigit((unsigned char)s[j]) || s[j] == '.'))
        j++;
      if (j - i > 64) {
        cim_seterr(L->err, "number too long");
        return false;
      }
      push(L, T_NUMBER, cim_xstrndup(s + i, j - i));
      i = j;
    } else if (c == '"' || c == '\'') {
      char q = c;
      char *v = malloc(len - i + 1);
      if (!v)
        abort();
      size_t o = 0, j = i + 1;
      bool closed = false;
      while (j < len) {
        char d = s[j++];
        if (d == '\\' && j < len && (s[j] == '\\' || s[j] == q)) {
          v[o++] = s[j++];
          continue;
        }
        if (d == q) {
          closed = true;
          break;
        }
        v[o++] = d;
      }
      v[o] = '\0';
      if (!closed) {
        free(v);
        cim_seterr(L->err, "unterminated string at offset %zu", i);
        return false;
      }
      push(L, T_STRING, v);
      i = j;
    } else if (c == '{') {
      /* ASSOCIATORS OF {path}: everything up to the matching '}' outside quotes */
      size_t j = i + 1;
      bool inq = false;
      while (j < len && (inq || s[j] != '}')) {
        if (s[j] == '"' && s[j - 1] != '\\')
          inq = !inq;
        j++;
      }
      if (j >= len) {
        cim_seterr(L->err, "unterminated {object path}");
        return false;
      }
      push(L, T_LBRACE_PATH, cim_xstrndup(s + i + 1, j - i - 1));
      i = j + 1;
    } else if (c == '(' || c == ')' || c == ',' || c == '*') {
      push(L, c == '(' ? T_LP : c == ')' ? T_RP : c == ',' ? T_COMMA : T_STAR, NULL);
      i++;
    } else if (c == '=' || c == '<' || c == '>' || c == '!') {
      size_t n = 1;
      if (i + 1 < len && (s[i + 1] == '=' || (c == '<' && s[i + 1] == '>')))
        n = 2;
      if (c == '!' && n == 1) {
        cim_seterr(L->err, "unexpected '!' at offset %zu", i);
        return false;
      }
      char *op = cim_xstrndup(s + i, n);
      if (!strcmp(op, "!=")) {
        free(op);
        op = cim_xstrndup("<>", 2);
      }
      push(L, T_OP, op);
      i += n;
    } else {
      cim_seterr(L->err, "unexpected character '%c' at offset %zu", isprint((unsigned char)c) ? c : '?', i);
      return false;
    }
    if (L->n > 4096) {
      cim_seterr(L->err, "query has too many tokens");
      return false;
    }
  }
  push(L, T_END, NULL);
  return true;
}

static token *peek(lexer *L)
{
  return &L->v[L->pos];
}

static bool kw(lexer *L, const char *w)
{
  token *t = peek(L);
  if (t->t == T_IDENT && !strcasecmp(t->text, w)) {
    L->pos++;
    return true;
  }
  return false;
}

static void free_node(node *n)
{
  if (!n)
    return;
  free_node(n->a);
  free_node(n->b);
  free(n->prop);
  free(n->op);
  free(n->lit);
  free(n);
}

static node *parse_or(lexer *L, int depth);

static bool is_keyword(const char *s)
{
  static const char *k[] = {"AND", "OR", "NOT", "LIKE", "IS", "NULL", "SELECT", "FROM", "WHERE", NULL};
  for (int i = 0; k[i]; i++)
    if (!strcasecmp(s, k[i]))
      return true;
  return false;
}

static node *parse_primary(lexer *L, int depth)
{
  if (depth > CIM_MAX_DEPTH)
    return cim_seterr(L->err, "query nested too deeply");
  if (kw(L, "NOT")) {
    node *inner = parse_primary(L, depth + 1);
    if (!inner)
      return NULL;
    node *n = calloc(1, sizeof *n);
    if (!n)
      abort();
    n->k = N_NOT;
    n->a = inner;
    return n;
  }
  if (peek(L)->t == T_LP) {
    L->pos++;
    node *n = parse_or(L, depth + 1);
    if (!n)
      return NULL;
    if (peek(L)->t != T_RP) {
      free_node(n);
      return cim_seterr(L->err, "expected ')'");
    }
    L->pos++;
    return n;
  }
  /* comparison: prop op literal | literal op prop */
  token *a = peek(L);
  bool lit_first = a->t == T_STRING || a->t == T_NUMBER ||
                   (a->t == T_IDENT && (!strcasecmp(a->text, "TRUE") || !strcasecmp(a->text, "FALSE")));
  if (!lit_first && (a->t != T_IDENT || is_keyword(a->text)))
    return cim_seterr(L->err, "expected a property name or a condition");
  L->pos++;
  node *n = calloc(1, sizeof *n);
  if (!n)
    abort();
  if (!lit_first && kw(L, "IS")) {
    n->k = N_ISNULL;
    n->prop = strdup(a->text);
    n->negate = kw(L, "NOT");
    if (!kw(L, "NULL")) {
      free_node(n);
      return cim_seterr(L->err, "expected NULL after IS");
    }
    return n;
  }
  bool notlike = !lit_first && kw(L, "NOT");
  if (!lit_first && kw(L, "LIKE")) {
    token *p = peek(L);
    if (p->t != T_STRING) {
      free_node(n);
      return cim_seterr(L->err, "LIKE needs a string pattern");
    }
    L->pos++;
    n->k = N_LIKE;
    n->prop = strdup(a->text);
    n->lit = strdup(p->text);
    n->negate = notlike;
    return n;
  }
  if (notlike) {
    free_node(n);
    return cim_seterr(L->err, "expected LIKE after NOT");
  }
  token *op = peek(L);
  if (op->t != T_OP) {
    free_node(n);
    return cim_seterr(L->err, "expected a comparison operator after '%s'", a->text);
  }
  L->pos++;
  token *b = peek(L);
  n->k = N_CMP;
  n->op = strdup(op->text);
  if (lit_first) {
    if (b->t != T_IDENT || is_keyword(b->text)) {
      free_node(n);
      return cim_seterr(L->err, "a comparison needs a property on one side");
    }
    n->prop = strdup(b->text);
    n->lit = strdup(a->text);
    n->ltype = a->t;
    /* flip: 5 < X  ==  X > 5 */
    const char *flip = !strcmp(n->op, "<") ? ">" : !strcmp(n->op, ">") ? "<" : !strcmp(n->op, "<=") ? ">=" : !strcmp(n->op, ">=") ? "<=" : n->op;
    char *f = strdup(flip);
    free(n->op);
    n->op = f;
  } else {
    bool isnull = b->t == T_IDENT && !strcasecmp(b->text, "NULL");
    bool isbool = b->t == T_IDENT && (!strcasecmp(b->text, "TRUE") || !strcasecmp(b->text, "FALSE"));
    if (b->t != T_STRING && b->t != T_NUMBER && !isnull && !isbool) {
      free_node(n);
      return cim_seterr(L->err, "expected a literal after '%s'", op->text);
    }
    n->prop = strdup(a->text);
    n->lit = isnull ? NULL : strdup(b->text);
    n->ltype = isbool ? T_IDENT : b->t;
  }
  L->pos++;
  if (!n->prop || !n->op) {
    free_node(n);
    return cim_seterr(L->err, "out of memory");
  }
  return n;
}

/* left-associative chain of sub-expressions joined by the keyword op */
static node *parse_chain(lexer *L, int depth, const char *op, nkind k, node *(*sub)(lexer *, int))
{
  node *l = sub(L, depth + 1);
  while (l && kw(L, op)) {
    node *r = sub(L, depth + 1);
    if (!r) {
      free_node(l);
      return NULL;
    }
    node *n = calloc(1, sizeof *n);
    if (!n)
      abort();
    n->k = k;
    n->a = l;
    n->b = r;
    l = n;
  }
  return l;
}

static node *parse_and(lexer *L, int depth)
{
  return parse_chain(L, depth, "AND", N_AND, parse_primary);
}

static node *parse_or(lexer *L, int depth)
{
  if (depth > CIM_MAX_DEPTH)
    return cim_seterr(L->err, "query nested too deeply");
  return parse_chain(L, depth, "OR", N_OR, parse_and);
}

void cim_query_free(cim_query *q)
{
  if (!q)
    return;
  free(q->cls);
  for (size_t i = 0; i < q->n_props; i++)
    free(q->props[i]);
  free(q->props);
  free_node(q->where);
  cim_objpath_free(q->obj);
  for (size_t i = 0; i < q->n_assoc; i++) {
    free(q->assoc_names[i]);
    free(q->assoc_vals[i]);
  }
  free(q);
}

cim_query *cim_query_parse(const char *s, size_t len, char err[CIM_ERRLEN])
{
  if (!s)
    return cim_seterr(err, "no query");
  if (len > 65536)
    return cim_seterr(err, "query longer than 65536 bytes");
  if (memchr(s, '\0', len))
    return cim_seterr(err, "query contains a NUL byte");
  lexer L = {.err = err};
  cim_query *q = calloc(1, sizeof *q);
  if (!q)
    abort();
  if (!lex(&L, s, len))
    goto fail;
  if (kw(&L, "SELECT")) {
    q->kind = CIM_Q_SELECT;
    if (peek(&L)->t == T_STAR)
      L.pos++;
    else
      do {
        token *t = peek(&L);
        if (t->t != T_IDENT || is_keyword(t->text)) {
          cim_seterr(err, "expected a property name in the SELECT list");
          goto fail;
        }
        q->props = realloc(q->props, (q->n_props + 1) * sizeof(char *));
        if (!q->props)
          abort();
        q->props[q->n_props++] = strdup(t->text);
        L.pos++;
        if (q->n_props > 256) {
          cim_seterr(err, "too many properties in the SELECT list");
          goto fail;
        }
      } while (peek(&L)->t == T_COMMA && ++L.pos);
    if (!kw(&L, "FROM")) {
      cim_seterr(err, "expected FROM");
      goto fail;
    }
    token *c = peek(&L);
    if (c->t != T_IDENT || is_keyword(c->text)) {
      cim_seterr(err, "expected a class name after FROM");
      goto fail;
    }
    q->cls = strdup(c->text);
    L.pos++;
    if (kw(&L, "WHERE")) {
      q->where = parse_or(&L, 0);
      if (!q->where)
        goto fail;
    }
  } else if (kw(&L, "ASSOCIATORS")) {
    q->kind = CIM_Q_ASSOCIATORS;
    if (!kw(&L, "OF") || peek(&L)->t != T_LBRACE_PATH) {
      cim_seterr(err, "expected ASSOCIATORS OF {object path}");
      goto fail;
    }
    const char *path = peek(&L)->text;
    char perr[CIM_ERRLEN];
    q->obj = cim_objpath_parse(path, strlen(path), perr);
    if (!q->obj) {
      cim_seterr(err, "bad object path in ASSOCIATORS OF: %s", perr);
      goto fail;
    }
    L.pos++;
    if (kw(&L, "WHERE")) {
      while (peek(&L)->t == T_IDENT) {
        const char *name = peek(&L)->text;
        static const char *known[] = {"ResultClass", "AssocClass", "Role", "ResultRole",
                                      "RequiredQualifier", "RequiredAssocQualifier",
                                      "ClassDefsOnly", "SchemaOnly", NULL};
        int k = 0;
        while (known[k] && strcasecmp(known[k], name))
          k++;
        if (!known[k]) {
          cim_seterr(err, "unknown ASSOCIATORS OF condition %s", name);
          goto fail;
        }
        L.pos++;
        char *val = NULL;
        if (k < 6) {
          if (peek(&L)->t != T_OP || strcmp(peek(&L)->text, "=") || (L.pos++, peek(&L)->t != T_IDENT && peek(&L)->t != T_STRING)) {
            cim_seterr(err, "expected %s = name", known[k]);
            goto fail;
          }
          val = strdup(peek(&L)->text);
          L.pos++;
        } else
          val = strdup("TRUE");
        if (q->n_assoc == 8) {
          free(val);
          cim_seterr(err, "too many ASSOCIATORS OF conditions");
          goto fail;
        }
        q->assoc_names[q->n_assoc] = strdup(known[k]);
        q->assoc_vals[q->n_assoc++] = val;
      }
    }
  } else {
    cim_seterr(err, "a query starts with SELECT or ASSOCIATORS OF");
    goto fail;
  }
  if (peek(&L)->t != T_END) {
    cim_seterr(err, "unexpected text after the query");
    goto fail;
  }
  free_tokens(&L);
  return q;
fail:
  free_tokens(&L);
  cim_query_free(q);
  return NULL;
}

cim_qkind cim_query_kind(const cim_query *q)
{
  return q->kind;
}
const char *cim_query_class(const cim_query *q)
{
  return q->cls;
}
size_t cim_query_n_props(const cim_query *q)
{
  return q->n_props;
}
const char *cim_query_prop(const cim_query *q, size_t i)
{
  return i < q->n_props ? q->props[i] : NULL;
}
const cim_objpath *cim_query_object(const cim_query *q)
{
  return q->obj;
}
const char *cim_query_assoc_opt(const cim_query *q, const char *name)
{
  for (size_t i = 0; i < q->n_assoc; i++)
    if (!strcasecmp(q->assoc_names[i], name))
      return q->assoc_vals[i];
  return NULL;
}

/* ---- evaluation ------------------------------------------------------- */

static bool like_at(const char *t, const char *p, int depth)
{
  if (depth > 1000)
    return false;
  for (; *p; p++, t++) {
    if (*p == '%') {
      while (p[1] == '%')
        p++;
      for (const char *k = t;; k++) {
        if (like_at(k, p + 1, depth + 1))
          return true;
        if (!*k)
          return false;
      }
    }
    if (!*t)
      return false;
    if (*p == '_')
      continue;
    if (*p == '[') {
      const char *e = strchr(p + 1, ']');
      if (e) {
        bool neg = p[1] == '^', hit = false;
        for (const char *c = p + 1 + neg; c < e; c++) {
          if (c + 2 < e && c[1] == '-') {
            hit |= tolower((unsigned char)*t) >= tolower((unsigned char)c[0]) &&
                   tolower((unsigned char)*t) <= tolower((unsigned char)c[2]);
            c += 2;
          } else
            hit |= tolower((unsigned char)*c) == tolower((unsigned char)*t);
        }
        if (hit == neg)
          return false;
        p = e;
        continue;
      }
    }
    if (tolower((unsigned char)*p) != tolower((unsigned char)*t))
      return false;
  }
  return *t == '\0';
}

bool cim_like(const char *text, const char *pattern)
{
  /* bound the work: patterns with many % on long texts */
  if (strlen(pattern) > 1024 || strlen(text) > 65536)
    return false;
  return like_at(text, pattern, 0);
}

static int eval(const node *n, cim_getter get, void *user, char *err, int depth)
{
  if (depth > 4 * CIM_MAX_DEPTH) {
    cim_seterr(err, "query nested too deeply");
    return -1;
  }
  switch (n->k) {
  case N_AND: {
    int a = eval(n->a, get, user, err, depth + 1);
    if (a <= 0)
      return a;
    return eval(n->b, get, user, err, depth + 1);
  }
  case N_OR: {
    int a = eval(n->a, get, user, err, depth + 1);
    if (a != 0)
      return a;
    return eval(n->b, get, user, err, depth + 1);
  }
  case N_NOT: {
    int a = eval(n->a, get, user, err, depth + 1);
    return a < 0 ? a : !a;
  }
  default:
    break;
  }
  cim_value v = {0};
  if (!get(user, n->prop, &v)) {
    cim_seterr(err, "no property %s in this class", n->prop);
    return -1;
  }
  if (n->k == N_ISNULL)
    return (v.text == NULL) != n->negate;
  if (n->k == N_LIKE) {
    if (!v.text)
      return 0;
    return cim_like(v.text, n->lit) != n->negate;
  }
  if (!v.text || !n->lit) /* comparisons with NULL: only = NULL / <> NULL */
    return !strcmp(n->op, "=") ? (!v.text && !n->lit) : !strcmp(n->op, "<>") ? (!v.text != !n->lit) : 0;
  int c;
  if (v.type == CIM_V_NUMBER && n->ltype == T_NUMBER) {
    double a = strtod(v.text, NULL), b = strtod(n->lit, NULL);
    c = a < b ? -1 : a > b;
  } else if (v.type == CIM_V_BOOLEAN) {
    if (strcasecmp(n->lit, "TRUE") && strcasecmp(n->lit, "FALSE")) {
      cim_seterr(err, "property %s is a boolean", n->prop);
      return -1;
    }
    c = strcasecmp(v.text, n->lit) ? 1 : 0;
    if (strcmp(n->op, "=") && strcmp(n->op, "<>")) {
      cim_seterr(err, "booleans compare only with = and <>");
      return -1;
    }
  } else if (v.type == CIM_V_NUMBER) {
    cim_seterr(err, "property %s is a number", n->prop);
    return -1;
  } else
    c = strcasecmp(v.text, n->lit);
  if (!strcmp(n->op, "="))
    return c == 0;
  if (!strcmp(n->op, "<>"))
    return c != 0;
  if (!strcmp(n->op, "<"))
    return c < 0;
  if (!strcmp(n->op, ">"))
    return c > 0;
  if (!strcmp(n->op, "<="))
    return c <= 0;
  if (!strcmp(n->op, ">="))
    return c >= 0;
  cim_seterr(err, "unknown operator %s", n->op);
  return -1;
}

int cim_query_match(const cim_query *q, cim_getter get, void *user, char err[CIM_ERRLEN])
{
  if (!q->where)
    return 1;
  return eval(q->where, get, user, err, 0);
}
