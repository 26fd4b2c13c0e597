/* request.h — a CIM-XML operation request (DSP0200/DSP0201 SIMPLEREQ) as
 * parsed from an untrusted HTTP body, and a small XML writer for replies. */
#ifndef RP_CIM_REQUEST_H
#define RP_CIM_REQUEST_H
#include "cim.h"

typedef enum cim_pkind { CIM_P_VALUE, CIM_P_ARRAY, CIM_P_REF, CIM_P_CLASSNAME, CIM_P_INSTANCENAME } cim_pkind;

typedef struct cim_param {
  char *name;
  cim_pkind kind;
  size_t n_values;
  char **values;     /* VALUE / VALUE.ARRAY text, CLASSNAME NAME */
  cim_objpath *ref;  /* VALUE.REFERENCE / INSTANCENAME */
  bool is_null;
} cim_param;

typedef struct cim_request {
  char *msgid;
  char *method;      /* IMETHODCALL or METHODCALL NAME, as sent */
  bool intrinsic;
  char *nspace;      /* from LOCALNAMESPACEPATH, '/'-joined */
  cim_objpath *target; /* extrinsic: the instance or class the method is called on */
  size_t n_params;
  cim_param *params;
} cim_request;

/* Parses a request body. Returns NULL and sets *http_error to the CIMError
 * header value ("request-not-well-formed", "request-not-valid",
 * "unsupported-cim-version", ...) with a reason in err. Tolerates what
 * wbemcli sends: unescaped '&' and '<' inside VALUE text, no PARAMTYPE,
 * both NAMESPACE forms. DOCTYPE and entities are refused. */
cim_request *cim_request_parse(const char *body, size_t len, const char **http_error,
                               char err[CIM_ERRLEN]);
void cim_request_free(cim_request *r);
const cim_param *cim_request_param(const cim_request *r, const char *name); /* case-insensitive */

/* Growing text buffer with XML escaping. */
typedef struct cim_buf {
  char *s;
  size_t len, cap;
} cim_buf;
void cim_buf_add(cim_buf *b, const char *s);
void cim_buf_addf(cim_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cim_buf_esc(cim_buf *b, const char *s); /* escapes & < > " ' and drops invalid controls */
void cim_buf_free(cim_buf *b);
#endif
