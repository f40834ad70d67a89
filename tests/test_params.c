/* test_params.c — typed component parameters (src/core/params.c).
 * Reference: the YAML 1.2 core schema for scalar typing (ints, floats, bools, null,
 * quoted = string) and the spec table's own range / choices. */
#include <signal.h>
#include <stdio.h>
#include "testutil.h"
#include "core/params.h"

static const rx_param_spec sampler_spec[] = {
    {"steps", RX_P_INT, "20", 1, 1000, NULL, "number of model evaluations"},
    {"eta", RX_P_FLOAT, "0.0", 0, 1, NULL, "0 = deterministic"},
    {"timestep_spacing", RX_P_CHOICE, "leading", RX_NO_RANGE, "leading|trailing|linspace", "spacing"},
    {"clip", RX_P_BOOL, "true", RX_NO_RANGE, NULL, "clip x0"},
    {"lr", RX_P_FLOAT, "1e-4", RX_NO_RANGE, NULL, "learning rate"},
    {"init", RX_P_PATH, "null", RX_NO_RANGE, NULL, "checkpoint"},
    {"title", RX_P_STRING, "'hello: world'", RX_NO_RANGE, NULL, "quoted default"},
    {"channel_mult", RX_P_INT_LIST, "[1, 2, 2, 2]", 1, 8, NULL, "per level"},
    {"betas", RX_P_FLOAT_LIST, "[0.9, 0.999]", 0, 1, NULL, "adam betas"},
    {"down_blocks", RX_P_STRING_LIST, "[DownBlock2D, AttnDownBlock2D]", RX_NO_RANGE,
     "DownBlock2D|AttnDownBlock2D", "block types"},
    {"max_t", RX_P_INT, "null", 0, 100, NULL, "nullable int"},
    {0},
};

static rx_params *defaults(void) {
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("sampler/fake", sampler_spec, &p), RX_OK, "%s", rx_last_error());
    return p;
}

Test(params, spec_count) {
    cr_assert_eq(rx_param_spec_count(sampler_spec), 11);
    static const rx_param_spec empty[] = {{0}};
    cr_assert_eq(rx_param_spec_count(empty), 0);
}

Test(params, defaults_parsed_and_typed) {
    rx_params *p = defaults();
    cr_assert_eq(p->n, 11);
    cr_assert_eq(rx_param_int(p, "steps"), 20);
    cr_assert_eq(rx_param_float(p, "steps"), 20.0);  // INT also sets .f
    cr_assert_eq(rx_param_float(p, "eta"), 0.0);
    cr_assert_eq(rx_param_float(p, "lr"), 1e-4);     // exact: strtod of "1e-4"
    cr_assert_str_eq(rx_param_str(p, "timestep_spacing"), "leading");
    cr_assert_eq(rx_param_bool(p, "clip"), 1);
    cr_assert(rx_param_is_null(p, "init"));
    cr_assert_null(rx_param_str(p, "init"));
    cr_assert_str_eq(rx_param_str(p, "title"), "hello: world");
    int n = 0;
    const int64_t *cm = rx_param_int_list(p, "channel_mult", &n);
    cr_assert_eq(n, 4);
    cr_assert(cm[0] == 1 && cm[1] == 2 && cm[2] == 2 && cm[3] == 2);
    const double *cmf = rx_param_float_list(p, "channel_mult", &n);  // INT_LIST also fills .floats
    cr_assert(n == 4 && cmf[0] == 1.0 && cmf[3] == 2.0);
    const double *b = rx_param_float_list(p, "betas", &n);
    cr_assert(n == 2 && b[0] == 0.9 && b[1] == 0.999);
    const char **db = rx_param_str_list(p, "down_blocks", &n);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(db[0], "DownBlock2D");
    cr_assert_str_eq(db[1], "AttnDownBlock2D");
    cr_assert(rx_param_is_null(p, "max_t"));
    cr_assert_str_eq(p->component, "sampler/fake");
    rx_params_free(p);
}

Test(params, set_valid_values) {
    rx_params *p = defaults();
    cr_assert_eq(rx_params_set(p, "steps", "50"), RX_OK);
    cr_assert_eq(rx_param_int(p, "steps"), 50);
    cr_assert_eq(rx_params_set(p, "steps", " +7 "), RX_OK);
    cr_assert_eq(rx_param_int(p, "steps"), 7);
    cr_assert_eq(rx_params_set(p, "eta", ".5"), RX_OK);
    cr_assert_eq(rx_param_float(p, "eta"), 0.5);
    cr_assert_eq(rx_params_set(p, "eta", "1"), RX_OK);   // an int is a valid float
    cr_assert_eq(rx_param_float(p, "eta"), 1.0);
    cr_assert_eq(rx_params_set(p, "lr", "-3.25E+2"), RX_OK);
    cr_assert_eq(rx_param_float(p, "lr"), -325.0);
    cr_assert_eq(rx_params_set(p, "clip", "False"), RX_OK);
    cr_assert_eq(rx_param_bool(p, "clip"), 0);
    cr_assert_eq(rx_params_set(p, "timestep_spacing", "\"trailing\""), RX_OK);
    cr_assert_str_eq(rx_param_str(p, "timestep_spacing"), "trailing");
    cr_assert_eq(rx_params_set(p, "init", "runs/a b.safetensors"), RX_OK);
    cr_assert_not(rx_param_is_null(p, "init"));
    cr_assert_str_eq(rx_param_str(p, "init"), "runs/a b.safetensors");
    cr_assert_eq(rx_params_set(p, "init", "~"), RX_OK);
    cr_assert(rx_param_is_null(p, "init"));
    cr_assert_eq(rx_params_set(p, "title", "'it''s'"), RX_OK);  // YAML single-quote escape
    cr_assert_str_eq(rx_param_str(p, "title"), "it's");
    cr_assert_eq(rx_params_set(p, "title", "\"tab\\there\""), RX_OK);
    cr_assert_str_eq(rx_param_str(p, "title"), "tab\there");
    cr_assert_eq(rx_params_set(p, "title", "123"), RX_OK);  // any scalar is a string
    cr_assert_str_eq(rx_param_str(p, "title"), "123");
    cr_assert_eq(rx_params_set(p, "channel_mult", "[1,2,4,8,8]"), RX_OK);
    int n;
    const int64_t *cm = rx_param_int_list(p, "channel_mult", &n);
    cr_assert(n == 5 && cm[2] == 4 && cm[4] == 8);
    cr_assert_eq(rx_params_set(p, "channel_mult", "[]"), RX_OK);
    rx_param_int_list(p, "channel_mult", &n);
    cr_assert_eq(n, 0);
    cr_assert_eq(rx_params_set(p, "down_blocks", "[AttnDownBlock2D, 'DownBlock2D', AttnDownBlock2D]"), RX_OK);
    const char **db = rx_param_str_list(p, "down_blocks", &n);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(db[1], "DownBlock2D");
    cr_assert_eq(rx_params_set(p, "max_t", "100"), RX_OK);
    cr_assert_not(rx_param_is_null(p, "max_t"));
    cr_assert_eq(rx_param_int(p, "max_t"), 100);
    rx_params_free(p);
}

// A rejected value leaves the previous one in place, and the message names component + parameter.
typedef struct { const char *name, *text, *fragment; } bad_case;

Test(params, set_rejects_bad_values) {
    static const bad_case cases[] = {
        {"steps", "0", "out of range [1, 1000]"},
        {"steps", "1001", "out of range"},
        {"steps", "2.5", "expected an integer, got '2.5'"},
        {"steps", "'20'", "expected an integer, got string '20'"},  // quoted = string in YAML
        {"steps", "twenty", "expected an integer"},
        {"steps", "null", "may not be null"},
        {"steps", "[1, 2]", "got a list"},
        {"steps", "99999999999999999999", "expected an integer"},
        {"eta", "1.5", "out of range"},
        {"eta", "-0.1", "out of range"},
        {"lr", "inf", "expected a finite number"},
        {"lr", ".inf", "expected a finite number"},
        {"lr", "nan", "expected a finite number"},
        {"lr", "0x10", "expected a finite number"},
        {"lr", "1e", "expected a finite number"},
        {"clip", "yes", "expected true or false"},
        {"clip", "1", "expected true or false"},
        {"timestep_spacing", "trailng", "did you mean 'trailing'?"},
        {"timestep_spacing", "quadratic", "is not one of leading|trailing|linspace"},
        {"channel_mult", "[1, 16]", "element 1: value 16 is out of range [1, 8]"},
        {"channel_mult", "[1, [2]]", "nested lists"},
        {"channel_mult", "4", "expected a list of integers"},
        {"channel_mult", "[1, null]", "element 1: may not be null"},
        {"betas", "[0.9, 2]", "element 1: value 2 is out of range"},
        {"down_blocks", "[DownBlock2D, UpBlock2D]", "element 1: 'UpBlock2D' is not one of"},
        {"title", "{a: 1}", "a mapping is not allowed"},
        {"title", "[unclosed", "not a valid YAML value"},
        {"max_t", "101", "out of range"},
        {"nosuch", "1", "unknown parameter 'nosuch'"},
    };
    rx_params *p = defaults();
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        rx_clear_error();
        rx_status st = rx_params_set(p, cases[k].name, cases[k].text);
        cr_expect_eq(st, RX_ERR_CONFIG, "%s=%s accepted", cases[k].name, cases[k].text);
        cr_expect(strstr(rx_last_error(), cases[k].fragment) != NULL, "%s=%s: message '%s' lacks '%s'",
                  cases[k].name, cases[k].text, rx_last_error(), cases[k].fragment);
        cr_expect(strstr(rx_last_error(), "sampler/fake") != NULL, "no component in '%s'", rx_last_error());
        if (strcmp(cases[k].name, "nosuch"))
            cr_expect(strstr(rx_last_error(), cases[k].name) != NULL, "no parameter in '%s'", rx_last_error());
    }
    // unchanged after all those failures
    cr_assert_eq(rx_param_int(p, "steps"), 20);
    cr_assert_str_eq(rx_param_str(p, "timestep_spacing"), "leading");
    int n;
    cr_assert_eq(rx_param_int_list(p, "channel_mult", &n)[1], 2);
    cr_assert_eq(n, 4);
    rx_params_free(p);
}

Test(params, required_param_has_no_default) {
    static const rx_param_spec spec[] = {
        {"path", RX_P_PATH, NULL, RX_NO_RANGE, NULL, "required"},
        {0},
    };
    rx_params *p = (rx_params *)0x1;
    cr_assert_eq(rx_params_from_defaults("dataset/folder", spec, &p), RX_ERR_CONFIG);
    cr_assert_null(p);
    cr_assert(strstr(rx_last_error(), "'path' is required") != NULL, "%s", rx_last_error());
}

Test(params, bad_default_in_table_is_reported) {
    static const rx_param_spec spec[] = {
        {"steps", RX_P_INT, "2000", 1, 1000, NULL, "default out of its own range"},
        {0},
    };
    rx_params *p = NULL;
    cr_assert_eq(rx_params_from_defaults("sampler/broken", spec, &p), RX_ERR_CONFIG);
    cr_assert(strstr(rx_last_error(), "bad default") != NULL, "%s", rx_last_error());
}

Test(params, wrong_type_getter_aborts, .signal = SIGABRT) {
    rx_params *p = defaults();
    rx_param_str(p, "steps");  // programming error: RX_CHECK
}

Test(params, unknown_name_getter_aborts, .signal = SIGABRT) {
    rx_params *p = defaults();
    rx_param_int(p, "stpes");
}
