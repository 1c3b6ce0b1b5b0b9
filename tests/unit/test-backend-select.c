/* Unit tests for the backend selection in src/backend/backend.c: the precedence of the name's
 * sources and auto's order, over a table of fake backends. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "backend/backend.h"
#include "common/macro.h"

/* What each fake backend's probe says, set by the test; probes counts the calls. */
struct fake {
    bool available, slow;
    int err;
    int probes;
};
static struct fake fakes[4];

static int probe_i(size_t i, struct backend_probe *ret)
{
    fakes[i].probes++;
    memset(ret, 0, sizeof(*ret));
    if (fakes[i].err)
        return fakes[i].err;
    ret->available = fakes[i].available;
    ret->slow = fakes[i].slow;
    (void)snprintf(ret->reason, sizeof(ret->reason), "fake %zu %s", i,
                   fakes[i].available ? (fakes[i].slow ? "slow" : "fast") : "missing");
    return 0;
}
static int probe0(const struct backend_paths *p, struct backend_probe *r)
{
    (void)p;
    return probe_i(0, r);
}
static int probe1(const struct backend_paths *p, struct backend_probe *r)
{
    (void)p;
    return probe_i(1, r);
}
static int probe2(const struct backend_paths *p, struct backend_probe *r)
{
    (void)p;
    return probe_i(2, r);
}
static int probe3(const struct backend_paths *p, struct backend_probe *r)
{
    (void)p;
    return probe_i(3, r);
}

/* Like the real table: a VM first, then a shared-kernel backend, then two never-auto ones. */
static const struct backend_ops vm = { .name = "vm", .probe = probe0 };
static const struct backend_ops ns = { .name = "ns",
                                       .flags = BACKEND_SHARES_HOST_KERNEL,
                                       .probe = probe1 };
static const struct backend_ops ex1 = { .name = "ex1", .flags = BACKEND_NOT_AUTO, .probe = probe2 };
static const struct backend_ops ex2 = { .name = "ex2", .flags = BACKEND_NOT_AUTO, .probe = probe3 };
static const struct backend_ops *const table[] = { &vm, &ns, &ex1, &ex2 };

static int setup(void **state)
{
    (void)state;
    memset(fakes, 0, sizeof(fakes));
    /* the never-auto ones are always available: auto must still not take them */
    fakes[2].available = fakes[3].available = true;
    return 0;
}

static const char *choose(const char *name, int want_r)
{
    static struct backend_choice c;

    assert_int_equal(backend_choose(table, ARRAY_SIZE(table), name, NULL, &c), want_r);
    return c.ops ? c.ops->name : NULL;
}

static void test_precedence(void **state)
{
    enum backend_source src;
    (void)state;

    assert_string_equal(backend_resolve_name("a", "b", "c", &src), "a");
    assert_int_equal(src, BACKEND_SRC_FLAG);
    assert_string_equal(backend_resolve_name(NULL, "b", "c", &src), "b");
    assert_int_equal(src, BACKEND_SRC_ENV);
    /* an empty BOT_BOTTLE_BACKEND= counts as unset */
    assert_string_equal(backend_resolve_name(NULL, "", "c", &src), "c");
    assert_int_equal(src, BACKEND_SRC_CONFIG);
    assert_string_equal(backend_resolve_name("", NULL, NULL, &src), BACKEND_DEFAULT);
    assert_int_equal(src, BACKEND_SRC_DEFAULT);
    assert_string_equal(BACKEND_DEFAULT, "microvm");
    assert_string_equal(backend_source_name(BACKEND_SRC_ENV), "BOT_BOTTLE_BACKEND");
}

static void test_named(void **state)
{
    (void)state;
    fakes[0].available = true;
    fakes[0].slow = true;
    assert_string_equal(choose("vm", 0), "vm");   /* slow is still available when named */
    assert_null(choose("ns", -EOPNOTSUPP));       /* never a fallback to another one */
    assert_int_equal(fakes[0].probes, 1);         /* only the named one was probed */
    assert_string_equal(choose("ex1", 0), "ex1"); /* never-auto: fine when named */
    assert_null(choose("nope", -ENOENT));
    fakes[1].err = -EIO;
    assert_null(choose("ns", -EIO));
}

static void test_auto_fast_vm(void **state)
{
    (void)state;
    fakes[0].available = fakes[1].available = true;
    assert_string_equal(choose("auto", 0), "vm");
    assert_int_equal(fakes[1].probes, 0); /* no need to look further */
}

static void test_auto_slow_vm(void **state)
{
    (void)state;
    /* a VM under emulation loses to a shared kernel at full speed ... */
    fakes[0].available = fakes[0].slow = true;
    fakes[1].available = true;
    assert_string_equal(choose("auto", 0), "ns");
    /* ... and wins over nothing */
    fakes[1].available = false;
    assert_string_equal(choose("auto", 0), "vm");
    /* the never-auto backends were never even probed */
    assert_int_equal(fakes[2].probes + fakes[3].probes, 0);
}

static void test_auto_none(void **state)
{
    struct backend_choice c;
    (void)state;

    fakes[1].err = -EIO;
    assert_int_equal(backend_choose(table, ARRAY_SIZE(table), "auto", NULL, &c), -EOPNOTSUPP);
    assert_null(c.ops);
    /* why names each one auto considered */
    assert_non_null(strstr(c.why, "vm cannot run here (fake 0 missing)"));
    assert_non_null(strstr(c.why, "ns cannot run here (probing failed"));
    assert_null(strstr(c.why, "ex1"));
}

static void test_auto_why(void **state)
{
    struct backend_choice c;
    (void)state;

    fakes[0].available = fakes[0].slow = true;
    fakes[1].available = true;
    assert_int_equal(backend_choose(table, ARRAY_SIZE(table), "auto", NULL, &c), 0);
    assert_string_equal(c.why, "vm would be slow (fake 0 slow); ns can run here (fake 1 fast)");
    assert_string_equal(c.probe.reason, "fake 1 fast");
}

static void test_findings(void **state)
{
    struct backend_probe p = { 0 };
    (void)state;

    for (int i = 0; i < BACKEND_FINDINGS_MAX + 3; i++)
        backend_probe_add_finding(&p, "x", i % 2, "finding %d", i);
    assert_int_equal(p.n_findings, BACKEND_FINDINGS_MAX);
    assert_string_equal(p.findings[1].text, "finding 1");
    assert_true(p.findings[1].ok);
}

static void test_names(void **state)
{
    char buf[256];
    size_t n = 0;
    const struct backend_ops *const *list = backend_list(&n);
    (void)state;

    backend_names(buf, sizeof(buf));
    /* from the real table, auto last */
    assert_non_null(strstr(buf, list[0]->name));
    assert_non_null(strstr(buf, ", auto"));
    /* the default is in the table and auto may take it */
    assert_non_null(backend_find(BACKEND_DEFAULT));
    assert_false(backend_find(BACKEND_DEFAULT)->flags & BACKEND_NOT_AUTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_precedence, setup),
        cmocka_unit_test_setup(test_named, setup),
        cmocka_unit_test_setup(test_auto_fast_vm, setup),
        cmocka_unit_test_setup(test_auto_slow_vm, setup),
        cmocka_unit_test_setup(test_auto_none, setup),
        cmocka_unit_test_setup(test_auto_why, setup),
        cmocka_unit_test_setup(test_findings, setup),
        cmocka_unit_test_setup(test_names, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
