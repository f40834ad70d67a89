/* braceexpand.h — shell-style brace patterns for lists of shards, as Python's braceexpand
 * (which webdataset uses) expands them:
 *     "train-{000000..000003}.tar" -> train-000000.tar ... train-000003.tar   (zero padding:
 *                                     an end written with a leading 0 pads to the longer end)
 *     "{a,b}-{1..5..2}"            -> a-1 a-3 a-5 b-1 b-3 b-5   (left brace varies slowest)
 *     "{9..7}"                     -> 9 8 7;   "{x}" and "{}" stay literal, as braceexpand
 * Braces nest ("{a,b{1,2}}" -> a b1 b2). Letter ranges ({a..e}) and backslash escapes are
 * not supported: such braces stay literal, so a mistaken pattern names a file that is not
 * found rather than a silently different list. */
#ifndef RX_DATA_BRACEEXPAND_H
#define RX_DATA_BRACEEXPAND_H

#include "core/status.h"

/* Appends the expansion of `pattern` to the malloc'd array *out of *n malloc'd strings
 * (start with *out = NULL, *n = 0; free with rx_brace_free). More than 10^6 results, or a
 * range step of 0: RX_ERR_ARG naming the pattern. */
rx_status rx_brace_expand(const char *pattern, char ***out, int *n);
void      rx_brace_free(char **list, int n);

#endif
