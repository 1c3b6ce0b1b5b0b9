/*
 * Logging to stderr. Library code (common, policy, config, parsers) logs at debug at most;
 * cli/ and backend/ log once, at the boundary, with context.
 */
#pragma once

#include "common/macro.h"

enum log_level { LOG_LVL_ERROR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG, LOG_LVL_MAX };

void log_set_level(enum log_level lvl);
enum log_level log_get_level(void);
/* Prefix put before every message ("bot-bottle" by default). The string is not copied. */
void log_set_prefix(const char *prefix);

void log_msg(enum log_level lvl, const char *fmt, ...) _printf_(2, 3);
/* Logs "fmt: strerror(-err)" and returns err (a negative errno) so callers can `return`. */
int log_errno(enum log_level lvl, int err, const char *fmt, ...) _printf_(3, 4);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (_unlikely_(log_get_level() >= LOG_LVL_DEBUG))                                          \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
