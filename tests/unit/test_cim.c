/* Unit tests of the CIM text parsers: object paths, embedded instances (CIM-XML
 * and MOF, hostile XML included) and WQL parsing and evaluation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cim.h"

#define S(x) x, strlen(x)

static void paths_wmi_and_wbemcli(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  /* WMI: host, backslash namespace, doubled backslashes inside the value */
  const char *w = "\\\\HV01\\root\\virtualization\\v2:Msvm_VirtualSystemReferencePoint."
                  "InstanceID=\"Microsoft:1C2B\\\\disk\\\\0\",VirtualSystemIdentifier=\"AB-12\"";
  cim_objpath *p = cim_objpath_parse(S(w), err);
  assert_non_null(p);
  assert_string_equal(p->host, "HV01");
  assert_string_equal(p->nspace, "root/virtualization/v2");
  assert_string_equal(p->classname, "Msvm_VirtualSystemReferencePoint");
  assert_int_equal(p->n_keys, 2);
  assert_string_equal(cim_objpath_key(p, "instanceid"), "Microsoft:1C2B\\disk\\0");
  assert_string_equal(cim_objpath_key(p, "VirtualSystemIdentifier"), "AB-12");
  char *f = cim_objpath_format(p);
  cim_objpath *q = cim_objpath_parse(S(f), err);
  assert_non_null(q);
  assert_string_equal(cim_objpath_key(q, "InstanceID"), "Microsoft:1C2B\\disk\\0");
  free(f);
  cim_objpath_free(q);
  cim_objpath_free(p);
  /* wbemcli: host:port/ns:Class.Key="v" and the URL form */
  p = cim_objpath_parse(S("127.0.0.1:5988/root/virtualization/v2:Msvm_ConcreteJob.InstanceID=\"job-1\""), err);
  assert_non_null(p);
  assert_string_equal(p->host, "127.0.0.1:5988");
  assert_string_equal(p->nspace, "root/virtualization/v2");
  assert_string_equal(cim_objpath_key(p, "InstanceID"), "job-1");
  cim_objpath_free(p);
  p = cim_objpath_parse(S("http://u:p@localhost:5988/root/virtualization/v2:Msvm_ComputerSystem.CreationClassName=\"Msvm_ComputerSystem\",Name=\"x\""), err);
  assert_null(p); /* user:password in a path is refused (bad host character '@') */
  p = cim_objpath_parse(S("http://localhost:5988/root/cimv2:CIM_X.A=1,B=TRUE,C=-2.5"), err);
  assert_non_null(p);
  assert_string_equal(p->host, "localhost:5988");
  assert_int_equal(p->keys[0].type, CIM_K_NUMBER);
  assert_int_equal(p->keys[1].type, CIM_K_BOOLEAN);
  assert_int_equal(p->keys[2].type, CIM_K_NUMBER);
  cim_objpath_free(p);
  /* no namespace, singleton, escaped quote */
  p = cim_objpath_parse(S("Msvm_X=@"), err);
  assert_non_null(p);
  assert_int_equal(p->n_keys, 0);
  assert_null(p->nspace);
  cim_objpath_free(p);
  p = cim_objpath_parse(S("root/a:C.K=\"say \\\"hi\\\", ok\""), err);
  assert_non_null(p);
  assert_string_equal(cim_objpath_key(p, "K"), "say \"hi\", ok");
  cim_objpath_free(p);
}

static void paths_bad(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  const char *bad[] = {"", ":", "root:", "1Class", "C.", "C.K", "C.K=", "C.K=\"open",
                       "C.K=\"v\" junk", "\\\\\\root:C", "ro ot:C", "C.K=1,,L=2", "C!", NULL};
  for (int i = 0; bad[i]; i++) {
    cim_objpath *p = cim_objpath_parse(S(bad[i]), err);
    if (p)
      fail_msg("accepted bad path '%s'", bad[i]);
    assert_true(strlen(err) > 0);
  }
  assert_null(cim_objpath_parse("C.K=\"a\0b\"", 9, err)); /* NUL byte */
  /* too many keys */
  char big[8192] = "C.";
  for (int i = 0; i < 70; i++)
    sprintf(big + strlen(big), "%sK%d=1", i ? "," : "", i);
  assert_null(cim_objpath_parse(S(big), err));
  assert_non_null(strstr(err, "keys"));
}

static const char *xml_cim =
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>"
    "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemReferencePointExportSettingData\">"
    "<PROPERTY NAME=\"BaseReferencePoint\" TYPE=\"string\"><VALUE>\\\\h\\root\\virtualization\\v2:"
    "Msvm_VirtualSystemReferencePoint.InstanceID=&quot;Microsoft:abc&quot;</VALUE></PROPERTY>"
    "<PROPERTY.ARRAY NAME=\"DisksToExport\" TYPE=\"string\"><VALUE.ARRAY><VALUE>d1</VALUE>"
    "<VALUE>d2 &amp; more</VALUE></VALUE.ARRAY></PROPERTY.ARRAY>"
    "<PROPERTY NAME=\"Caption\" TYPE=\"string\"></PROPERTY>"
    "<PROPERTY.REFERENCE NAME=\"Ref\" REFERENCECLASS=\"C\"><VALUE.REFERENCE><INSTANCEPATH>"
    "<NAMESPACEPATH><HOST>h</HOST><LOCALNAMESPACEPATH><NAMESPACE NAME=\"root\"/></LOCALNAMESPACEPATH>"
    "</NAMESPACEPATH><INSTANCENAME CLASSNAME=\"Msvm_X\"><KEYBINDING NAME=\"InstanceID\">"
    "<KEYVALUE VALUETYPE=\"string\">a\"b</KEYVALUE></KEYBINDING></INSTANCENAME></INSTANCEPATH>"
    "</VALUE.REFERENCE></PROPERTY.REFERENCE></INSTANCE>";

static const char *xml_wmi =
    "<INSTANCE CLASSNAME=\"Msvm_VirtualSystemReferencePointSettingData\">"
    "<PROPERTY NAME=\"__PATH\" CLASSORIGIN=\"___SYSTEM\" TYPE=\"string\"><VALUE>x</VALUE></PROPERTY>"
    "<PROPERTY NAME=\"ConsistencyLevel\" CLASSORIGIN=\"Msvm_X\" TYPE=\"uint8\">"
    "<QUALIFIER NAME=\"CIMTYPE\" TYPE=\"string\"><VALUE>uint8</VALUE></QUALIFIER><VALUE>1</VALUE>"
    "</PROPERTY></INSTANCE>";

static void instances_xml(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  cim_instance *in = cim_instance_parse(S(xml_cim), err);
  assert_non_null(in);
  assert_string_equal(in->classname, "Msvm_VirtualSystemReferencePointExportSettingData");
  const cim_prop *b = cim_instance_prop(in, "basereferencepoint");
  assert_non_null(b);
  assert_non_null(strstr(b->values[0], "InstanceID=\"Microsoft:abc\""));
  const cim_prop *d = cim_instance_prop(in, "DisksToExport");
  assert_true(d->is_array);
  assert_int_equal(d->n_values, 2);
  assert_string_equal(d->values[1], "d2 & more");
  assert_true(cim_instance_prop(in, "Caption")->is_null);
  const cim_prop *r = cim_instance_prop(in, "Ref");
  assert_string_equal(r->values[0], "Msvm_X.InstanceID=\"a\\\"b\"");
  cim_instance_free(in);
  in = cim_instance_parse(S(xml_wmi), err);
  assert_non_null(in);
  assert_null(cim_instance_prop(in, "__PATH")); /* WMI system properties dropped */
  assert_string_equal(cim_instance_prop(in, "ConsistencyLevel")->values[0], "1");
  assert_string_equal(cim_instance_prop(in, "ConsistencyLevel")->type, "uint8");
  cim_instance_free(in);
}

static void instances_xml_hostile(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  const char *bad[] = {
      /* XXE */
      "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>"
      "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"P\" TYPE=\"string\"><VALUE>&x;</VALUE></PROPERTY></INSTANCE>",
      /* billion laughs */
      "<!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">"
      "<!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]><INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"P\">"
      "<VALUE>&c;</VALUE></PROPERTY></INSTANCE>",
      "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"P\"><VALUE>x</VALUE></PROPERTY>", /* unclosed */
      "<INSTANCE><PROPERTY NAME=\"P\"/></INSTANCE>",                                /* no class */
      "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"1bad\"/></INSTANCE>",
      "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"P\"/><PROPERTY NAME=\"p\"/></INSTANCE>",
      "<VALUE>no instance</VALUE>",
      "<INSTANCE CLASSNAME=\"C\"><PROPERTY NAME=\"P\"><VALUE>&undefined;</VALUE></PROPERTY></INSTANCE>",
      NULL};
  for (int i = 0; bad[i]; i++) {
    cim_instance *in = cim_instance_parse(S(bad[i]), err);
    if (in)
      fail_msg("accepted hostile or bad XML #%d", i);
  }
  /* deep nesting is bounded by libxml2 and by us */
  size_t n = 100000;
  char *deep = malloc(n * 6 + 64);
  strcpy(deep, "");
  for (size_t i = 0; i < n; i++)
    strcat(deep + i * 3, "<a>");
  assert_null(cim_instance_parse(deep, strlen(deep), err));
  free(deep);
}

static void instances_mof(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  const char *m =
      "// from CimSerializer\n"
      "instance of Msvm_VirtualSystemReferencePointExportSettingData\n{\n"
      "    BaseReferencePoint = \"\\\\\\\\HV\\\\root\\\\virtualization\\\\v2:Msvm_VirtualSystemReferencePoint."
      "InstanceID=\\\"Microsoft:abc\\\"\";\n"
      "    DisksToExport = {\"d1\", \"d2\"};\n"
      "    /* a comment */ [Key] InstanceID = \"part1\" \"part2\";\n"
      "    ConsistencyLevel = 2; Flag = TRUE; Nothing = NULL; Empty = {};\n"
      "};\n";
  cim_instance *in = cim_instance_parse(S(m), err);
  if (!in)
    fail_msg("%s", err);
  assert_string_equal(in->classname, "Msvm_VirtualSystemReferencePointExportSettingData");
  assert_string_equal(cim_instance_prop(in, "BaseReferencePoint")->values[0],
                      "\\\\HV\\root\\virtualization\\v2:Msvm_VirtualSystemReferencePoint."
                      "InstanceID=\"Microsoft:abc\"");
  const cim_prop *d = cim_instance_prop(in, "DisksToExport");
  assert_true(d->is_array);
  assert_int_equal(d->n_values, 2);
  assert_string_equal(cim_instance_prop(in, "InstanceID")->values[0], "part1part2");
  assert_string_equal(cim_instance_prop(in, "ConsistencyLevel")->values[0], "2");
  assert_string_equal(cim_instance_prop(in, "Flag")->values[0], "TRUE");
  assert_true(cim_instance_prop(in, "Nothing")->is_null);
  assert_int_equal(cim_instance_prop(in, "Empty")->n_values, 0);
  /* the BaseReferencePoint value is itself an object path */
  const char *bp = cim_instance_prop(in, "BaseReferencePoint")->values[0];
  cim_objpath *p = cim_objpath_parse(S(bp), err);
  assert_non_null(p);
  assert_string_equal(cim_objpath_key(p, "InstanceID"), "Microsoft:abc");
  cim_objpath_free(p);
  cim_instance_free(in);
  const char *bad[] = {"", "instance", "instance of", "instance of C", "instance of C {",
                       "instance of C { P = ; };", "instance of C { P = \"x }; ",
                       "instance of C { P = 1 };", "instance of C { P = 1; } junk",
                       "instance of C { P = {1, }; };", "instance of C { P = word; };",
                       "instance of C { P = 1; p = 2; };", NULL};
  for (int i = 0; bad[i]; i++)
    if (cim_instance_parse(S(bad[i]), err))
      fail_msg("accepted bad MOF '%s'", bad[i]);
}

struct row {
  const char *name, *state, *n;
};
static bool getter(void *user, const char *prop, cim_value *out)
{
  const struct row *r = user;
  if (!strcasecmp(prop, "ElementName")) {
    out->text = r->name;
    out->type = CIM_V_STRING;
  } else if (!strcasecmp(prop, "State")) {
    out->text = r->state;
    out->type = CIM_V_STRING;
  } else if (!strcasecmp(prop, "N")) {
    out->text = r->n;
    out->type = CIM_V_NUMBER;
  } else if (!strcasecmp(prop, "HasAssociatedData")) {
    out->text = "TRUE";
    out->type = CIM_V_BOOLEAN;
  } else
    return false;
  return true;
}

static int match(const char *q, const struct row *r)
{
  char err[CIM_ERRLEN];
  cim_query *cq = cim_query_parse(S(q), err);
  if (!cq)
    fail_msg("query '%s': %s", q, err);
  int m = cim_query_match(cq, getter, (void *)r, err);
  cim_query_free(cq);
  return m;
}

static void wql(void **state)
{
  (void)state;
  char err[CIM_ERRLEN];
  cim_query *q = cim_query_parse(S("select ElementName, N from Msvm_ComputerSystem where ElementName = 'web'"), err);
  assert_non_null(q);
  assert_int_equal(cim_query_kind(q), CIM_Q_SELECT);
  assert_string_equal(cim_query_class(q), "Msvm_ComputerSystem");
  assert_int_equal(cim_query_n_props(q), 2);
  assert_string_equal(cim_query_prop(q, 1), "N");
  cim_query_free(q);
  struct row r = {"Web-01", NULL, "42"};
  assert_int_equal(match("SELECT * FROM C", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName = \"web-01\"", &r), 1); /* case-insensitive */
  assert_int_equal(match("SELECT * FROM C WHERE ElementName <> 'web-01'", &r), 0);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName != 'x'", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE N > 41 AND N < 43", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE N >= 43 OR N <= 41", &r), 0);
  assert_int_equal(match("SELECT * FROM C WHERE 40 < N", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE NOT (N = 42)", &r), 0);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName LIKE 'web%'", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName LIKE 'w_b-0[0-9]'", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName NOT LIKE '%x%'", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE State IS NULL", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE ElementName IS NOT NULL AND (N = 1 OR N = 42)", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE HasAssociatedData = TRUE", &r), 1);
  assert_int_equal(match("SELECT * FROM C WHERE Missing = 1", &r), -1);
  assert_int_equal(match("SELECT * FROM C WHERE N = 'x'", &r), -1);
  q = cim_query_parse(S("ASSOCIATORS OF {Msvm_ConcreteJob.InstanceID=\"j{1}\"} WHERE ResultClass = Msvm_VirtualSystemReferencePoint AssocClass = Msvm_AffectedJobElement"), err);
  if (!q)
    fail_msg("%s", err);
  assert_int_equal(cim_query_kind(q), CIM_Q_ASSOCIATORS);
  assert_string_equal(cim_objpath_key(cim_query_object(q), "InstanceID"), "j{1}");
  assert_string_equal(cim_query_assoc_opt(q, "resultclass"), "Msvm_VirtualSystemReferencePoint");
  assert_string_equal(cim_query_assoc_opt(q, "AssocClass"), "Msvm_AffectedJobElement");
  cim_query_free(q);
  const char *bad[] = {"", "SELECT", "SELECT * FROM", "SELECT * C", "SELECT * FROM C WHERE",
                       "SELECT * FROM C WHERE N =", "SELECT * FROM C WHERE (N = 1",
                       "SELECT * FROM C WHERE N = 1 junk", "SELECT * FROM C WHERE 'a' = 'b'",
                       "SELECT * FROM C WHERE N LIKE 5", "DELETE FROM C", "SELECT * FROM C WHERE N ! 1",
                       "ASSOCIATORS OF C", "ASSOCIATORS OF {C.K=1} WHERE Bogus = X",
                       "SELECT * FROM C WHERE N = 'unterminated", NULL};
  for (int i = 0; bad[i]; i++)
    if ((q = cim_query_parse(S(bad[i]), err))) {
      cim_query_free(q);
      fail_msg("accepted bad query '%s'", bad[i]);
    }
  /* nesting is bounded */
  char deep[4096] = "SELECT * FROM C WHERE ";
  for (int i = 0; i < 500; i++)
    strcat(deep, "(");
  strcat(deep, "N = 1");
  for (int i = 0; i < 500; i++)
    strcat(deep, ")");
  assert_null(cim_query_parse(S(deep), err));
  assert_non_null(strstr(err, "deep"));
  assert_true(cim_like("abc", "%"));
  assert_false(cim_like("abc", "ab"));
  assert_true(cim_like("", "%%"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(paths_wmi_and_wbemcli), cmocka_unit_test(paths_bad),
      cmocka_unit_test(instances_xml),         cmocka_unit_test(instances_xml_hostile),
      cmocka_unit_test(instances_mof),         cmocka_unit_test(wql),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
