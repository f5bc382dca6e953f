#include "init_cmdline.h"

#include "init_error.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* rootdelay= beyond a day is a typo, not a slow disk. */
enum { kMaxRootDelaySeconds = 86400 };

static char* skip_spaces(char* text) {
  while (isspace((unsigned char)*text)) text++;
  return text;
}

/* The kernel's next_arg (lib/cmdline.c): splits off the word at `text` (which starts at no space),
 * sets *name and *value (NULL without '='), drops the quotes of `"name=value"` and `name="value"`,
 * and returns where the next word starts. */
static char* next_word(char* text, char** name, char** value) {
  bool in_quote = false;
  bool quoted = false;
  if (*text == '"') {
    text++;
    in_quote = quoted = true;
  }
  size_t length = 0;
  size_t equals = 0;
  for (; text[length] != '\0'; length++) {
    if (isspace((unsigned char)text[length]) && !in_quote) break;
    if (equals == 0 && text[length] == '=') equals = length;
    if (text[length] == '"') in_quote = !in_quote;
  }
  *name = text;
  *value = NULL;
  if (equals != 0) {
    text[equals] = '\0';
    *value = text + equals + 1;
    if (**value == '"') {
      (*value)++;
      if (text[length - 1] == '"') text[length - 1] = '\0';
    }
  }
  if (quoted && length > 0 && text[length - 1] == '"') text[length - 1] = '\0';
  if (text[length] == '\0') return text + length;
  text[length] = '\0';
  return skip_spaces(text + length + 1);
}

static bool parse_seconds(const char* name, const char* value, unsigned* seconds, char* error,
                          size_t error_size) {
  char* end = NULL;
  errno = 0;
  unsigned long parsed =
      value != NULL && isdigit((unsigned char)*value) ? strtoul(value, &end, 10) : 0;
  if (end == NULL || *end != '\0' || errno != 0 || parsed > kMaxRootDelaySeconds)
    return init_fail(error, error_size, "%s=%s: not a number of seconds (0 to %d)", name,
                     value != NULL ? value : "", kMaxRootDelaySeconds);
  *seconds = (unsigned)parsed;
  return true;
}

/* `module.name[=value]`: one for the module loader. Other dotted words (an empty module or
 * parameter name) are left to the kernel. */
static bool add_module_param(struct init_cmdline* cmdline, const char* name, const char* value,
                             char* error, size_t error_size) {
  const char* dot = strchr(name, '.');
  if (dot == NULL || dot == name || dot[1] == '\0') return true;
  if (cmdline->module_param_count == INIT_CMDLINE_MAX_MODULE_PARAMS)
    return init_fail(error, error_size, "more than %d module parameters on the kernel command line",
                     INIT_CMDLINE_MAX_MODULE_PARAMS);
  cmdline->module_params[cmdline->module_param_count++] = (struct init_module_param){
      .module = name, .module_length = (size_t)(dot - name), .name = dot + 1, .value = value};
  return true;
}

static bool flag_is(const char* name, const char* value, const char* flag) {
  return value == NULL && strcmp(name, flag) == 0;
}

bool init_cmdline_parse(char* text, struct init_cmdline* cmdline, char* error, size_t error_size) {
  *cmdline = (struct init_cmdline){0};
  for (char* next = skip_spaces(text); *next != '\0';) {
    bool bare_dashes =
        strncmp(next, "--", 2) == 0 && (next[2] == '\0' || isspace((unsigned char)next[2]));
    if (bare_dashes) break; /* the rest is the init's */
    char* name = NULL;
    char* value = NULL;
    next = next_word(next, &name, &value);
    if (value != NULL && strcmp(name, "root") == 0) {
      cmdline->root = value;
    } else if (value != NULL && strcmp(name, "rootfstype") == 0) {
      cmdline->rootfstype = value;
    } else if (value != NULL && strcmp(name, "rootflags") == 0) {
      cmdline->rootflags = value;
    } else if (value != NULL && strcmp(name, "init") == 0) {
      cmdline->init = value;
    } else if (strcmp(name, "rootdelay") == 0) {
      if (!parse_seconds(name, value, &cmdline->rootdelay, error, error_size)) return false;
    } else if (flag_is(name, value, "ro") || flag_is(name, value, "rw")) {
      cmdline->read_write = name[1] == 'w';
    } else if (flag_is(name, value, "rootwait")) {
      cmdline->rootwait = true;
    } else if (flag_is(name, value, "quiet")) {
      cmdline->quiet = true;
    } else if (!add_module_param(cmdline, name, value, error, error_size)) {
      return false;
    }
  }
  return true;
}

bool init_cmdline_check_root(const struct init_cmdline* cmdline, char* error, size_t error_size) {
  if (cmdline->root == NULL)
    return init_fail(
        error, error_size,
        "no root= on the kernel command line: give the root device, e.g. root=/dev/vda");
  if (strncmp(cmdline->root, "/dev/", 5) != 0 || cmdline->root[5] == '\0')
    return init_fail(error, error_size,
                     "root=%s: vmm's initramfs takes only a /dev path (root=/dev/vda1), not UUID=, "
                     "LABEL=, PARTUUID= or a device number",
                     cmdline->root);
  return true;
}

/* Module names treat '-' and '_' alike (modprobe's rule). */
static bool module_name_matches(const struct init_module_param* param, const char* module) {
  if (strlen(module) != param->module_length) return false;
  for (size_t i = 0; i < param->module_length; i++) {
    char a = param->module[i] == '-' ? '_' : param->module[i];
    char b = module[i] == '-' ? '_' : module[i];
    if (a != b) return false;
  }
  return true;
}

static bool has_space(const char* text) {
  for (; *text != '\0'; text++)
    if (isspace((unsigned char)*text)) return true;
  return false;
}

bool init_cmdline_module_options(const struct init_cmdline* cmdline, const char* module,
                                 char* options, size_t options_size, char* error,
                                 size_t error_size) {
  size_t used = 0;
  if (options_size == 0)
    return init_fail(error, error_size, "%s: no room for its parameters", module);
  options[0] = '\0';
  for (size_t i = 0; i < cmdline->module_param_count; i++) {
    const struct init_module_param* param = &cmdline->module_params[i];
    if (!module_name_matches(param, module)) continue;
    const char* value = param->value != NULL ? param->value : "";
    const char* quote = has_space(value) ? "\"" : "";
    int written =
        snprintf(options + used, options_size - used, "%s%s%s%s%s%s", used == 0 ? "" : " ",
                 param->name, param->value != NULL ? "=" : "", quote, value, quote);
    if (written < 0 || (size_t)written >= options_size - used)
      return init_fail(error, error_size, "%s: its parameters take more than %zu bytes", module,
                       options_size - 1);
    used += (size_t)written;
  }
  return true;
}
