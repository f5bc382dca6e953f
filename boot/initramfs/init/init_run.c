#include "init_run.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "init_error.h"

enum {
  /* The highest signal Linux has (SIGRTMAX on x86-64). */
  kMaxSignal = 64,
  kShellSignalBase = 128,
};

/* (uid_t)-1 and (gid_t)-1 mean "leave it" to setresuid and setresgid: no process has them. */
static const unsigned long long kMaxId = UINT32_MAX - 1ULL;

/* The job's bytes, consumed one NUL-terminated string at a time. */
struct job_cursor {
  char* bytes;
  size_t size;
  size_t position;
};

static bool next_string(struct job_cursor* cursor, const char* what, char** text, char* error,
                        size_t error_size) {
  if (cursor->position == cursor->size)
    return init_fail(error, error_size, "run job: truncated before %s", what);
  char* start = cursor->bytes + cursor->position;
  char* end = memchr(start, '\0', cursor->size - cursor->position);
  if (end == NULL) return init_fail(error, error_size, "run job: %s has no terminating NUL", what);
  cursor->position += (size_t)(end - start) + 1;
  *text = start;
  return true;
}

/* Canonical decimal ("0", "42"; no sign, space or leading zero) no larger than `max`. */
static bool parse_decimal(const char* text, unsigned long long max, unsigned long long* value) {
  size_t length = strlen(text);
  if (length == 0 || length > 20 || (text[0] == '0' && length > 1)) return false;
  unsigned long long parsed = 0;
  for (size_t i = 0; i < length; i++) {
    if (text[i] < '0' || text[i] > '9') return false;
    unsigned digit = (unsigned)(text[i] - '0');
    if (digit > max || parsed > (max - digit) / 10) return false;
    parsed = parsed * 10 + digit;
  }
  *value = parsed;
  return true;
}

static bool next_number(struct job_cursor* cursor, const char* what, unsigned long long max,
                        unsigned long long* value, char* error, size_t error_size) {
  char* text = NULL;
  if (!next_string(cursor, what, &text, error, error_size)) return false;
  if (!parse_decimal(text, max, value))
    return init_fail(error, error_size, "run job: %s '%.32s' is not a number from 0 to %llu", what,
                     text, max);
  return true;
}

/* A count of strings still to come: never more than the bytes left, each string taking one. */
static bool next_count(struct job_cursor* cursor, const char* what, unsigned long long max,
                       size_t* count, char* error, size_t error_size) {
  unsigned long long value = 0;
  if (!next_number(cursor, what, max, &value, error, error_size)) return false;
  if (value > cursor->size - cursor->position)
    return init_fail(error, error_size, "run job: %s %llu is more than the job holds", what, value);
  *count = (size_t)value;
  return true;
}

static bool parse_groups(char* text, struct run_job* job, char* error, size_t error_size) {
  if (*text == '\0') return true;
  size_t count = 1;
  for (const char* c = text; *c != '\0'; c++) count += *c == ',';
  if (count > RUN_JOB_MAX_GROUPS)
    return init_fail(error, error_size, "run job: %zu supplementary groups, more than %d", count,
                     RUN_JOB_MAX_GROUPS);
  job->groups = calloc(count, sizeof *job->groups);
  if (job->groups == NULL) return init_fail(error, error_size, "run job: out of memory");
  char* position = text;
  for (size_t i = 0; i < count; i++) {
    char* comma = strchr(position, ',');
    if (comma != NULL) *comma = '\0';
    unsigned long long group = 0;
    if (!parse_decimal(position, kMaxId, &group))
      return init_fail(error, error_size, "run job: group '%.32s' is not a number from 0 to %llu",
                       position, kMaxId);
    job->groups[i] = (gid_t)group;
    if (comma != NULL) position = comma + 1;
  }
  job->group_count = count;
  return true;
}

static bool has_dot_dot_part(const char* path) {
  for (const char* part = path; part != NULL;) {
    const char* slash = strchr(part, '/');
    size_t length = slash != NULL ? (size_t)(slash - part) : strlen(part);
    if (length == 2 && part[0] == '.' && part[1] == '.') return true;
    part = slash != NULL ? slash + 1 : NULL;
  }
  return false;
}

static bool next_path(struct job_cursor* cursor, const char* what, const char** path, char* error,
                      size_t error_size) {
  char* text = NULL;
  if (!next_string(cursor, what, &text, error, error_size)) return false;
  if (text[0] != '/')
    return init_fail(error, error_size, "run job: %s '%s' is not an absolute path", what, text);
  if (has_dot_dot_part(text))
    return init_fail(error, error_size, "run job: %s '%s' has a '..' part", what, text);
  *path = text;
  return true;
}

static bool parse_mount(struct job_cursor* cursor, size_t index, struct run_mount* mount,
                        char* error, size_t error_size) {
  char* tag = NULL;
  if (!next_string(cursor, "a mount's tag", &tag, error, error_size)) return false;
  size_t tag_length = strlen(tag);
  if (tag_length == 0 || tag_length > VMM_RUN_TAG_MAX)
    return init_fail(error, error_size, "run job: mount tag '%.40s' is not 1 to %u bytes", tag,
                     VMM_RUN_TAG_MAX);
  if (!next_path(cursor, "mount path", &mount->path, error, error_size)) return false;
  char* mode = NULL;
  if (!next_string(cursor, "a mount's mode", &mode, error, error_size)) return false;
  if (strcmp(mode, "ro") != 0 && strcmp(mode, "rw") != 0)
    return init_fail(error, error_size, "run job: mount %s: mode '%.8s' is neither ro nor rw",
                     mount->path, mode);
  mount->tag = tag;
  mount->read_only = mode[1] == 'o';
  bool is_root = strcmp(mount->path, "/") == 0;
  if (index == 0 && (!is_root || !mount->read_only))
    return init_fail(error, error_size,
                     "run job: the first mount is %s %s, not the root (\"/\" read-only)",
                     mount->path, mode);
  if (index > 0 && is_root)
    return init_fail(error, error_size, "run job: mount %s: only the first mount may be \"/\"",
                     tag);
  return true;
}

/* `count` strings into a NULL-terminated array. */
static bool next_strings(struct job_cursor* cursor, const char* what, size_t count, char*** strings,
                         char* error, size_t error_size) {
  *strings = calloc(count + 1, sizeof **strings);
  if (*strings == NULL) return init_fail(error, error_size, "run job: out of memory");
  for (size_t i = 0; i < count; i++)
    if (!next_string(cursor, what, &(*strings)[i], error, error_size)) return false;
  return true;
}

static bool parse_job(struct job_cursor* cursor, struct run_job* job, char* error,
                      size_t error_size) {
  char* magic = NULL;
  if (!next_string(cursor, "the magic", &magic, error, error_size)) return false;
  if (strcmp(magic, VMM_RUN_JOB_MAGIC) != 0)
    return init_fail(error, error_size, "run job: starts with '%.16s', not " VMM_RUN_JOB_MAGIC,
                     magic);
  unsigned long long id = 0;
  if (!next_number(cursor, "uid", kMaxId, &id, error, error_size)) return false;
  job->uid = (uid_t)id;
  if (!next_number(cursor, "gid", kMaxId, &id, error, error_size)) return false;
  job->gid = (gid_t)id;
  char* groups = NULL;
  if (!next_string(cursor, "the groups", &groups, error, error_size) ||
      !parse_groups(groups, job, error, error_size))
    return false;
  if (!next_path(cursor, "cwd", &job->cwd, error, error_size)) return false;

  if (!next_count(cursor, "mount count", VMM_RUN_JOB_MAX_MOUNTS, &job->mount_count, error,
                  error_size))
    return false;
  if (job->mount_count == 0)
    return init_fail(error, error_size, "run job: no mounts (the first must be the root)");
  job->mounts = calloc(job->mount_count, sizeof *job->mounts);
  if (job->mounts == NULL) return init_fail(error, error_size, "run job: out of memory");
  for (size_t i = 0; i < job->mount_count; i++)
    if (!parse_mount(cursor, i, &job->mounts[i], error, error_size)) return false;

  if (!next_count(cursor, "argc", SIZE_MAX, &job->argc, error, error_size) ||
      !next_strings(cursor, "an argument", job->argc, &job->argv, error, error_size))
    return false;
  if (job->argc == 0 || job->argv[0][0] == '\0')
    return init_fail(error, error_size, "run job: no command to run");

  if (!next_count(cursor, "envc", SIZE_MAX, &job->envc, error, error_size) ||
      !next_strings(cursor, "an environment entry", job->envc, &job->env, error, error_size))
    return false;
  for (size_t i = 0; i < job->envc; i++) {
    const char* equals = strchr(job->env[i], '=');
    if (equals == NULL || equals == job->env[i])
      return init_fail(error, error_size, "run job: environment entry '%.64s' is not NAME=value",
                       job->env[i]);
  }
  if (cursor->position != cursor->size)
    return init_fail(error, error_size, "run job: %zu bytes after the environment",
                     cursor->size - cursor->position);
  return true;
}

bool run_job_parse(char* bytes, size_t size, struct run_job* job, char* error, size_t error_size) {
  *job = (struct run_job){0};
  if (size > VMM_RUN_JOB_MAX_SIZE)
    return init_fail(error, error_size, "run job: %zu bytes, more than %u", size,
                     VMM_RUN_JOB_MAX_SIZE);
  struct job_cursor cursor = {.bytes = bytes, .size = size, .position = 0};
  if (parse_job(&cursor, job, error, error_size)) return true;
  run_job_free(job);
  return false;
}

void run_job_free(struct run_job* job) {
  free(job->groups);
  free(job->mounts);
  free(job->argv);
  free(job->env);
  *job = (struct run_job){0};
}

/* "signal N", N 1 to kMaxSignal; 0 for any other line. */
static int signal_of_line(const char* line) {
  const size_t prefix = sizeof VMM_RUN_CONTROL_SIGNAL - 1;
  unsigned long long signal = 0;
  if (strncmp(line, VMM_RUN_CONTROL_SIGNAL, prefix) != 0 ||
      !parse_decimal(line + prefix, kMaxSignal, &signal))
    return 0;
  return (int)signal;
}

void run_control_feed(struct run_control_reader* reader, const char* bytes, size_t size,
                      void (*on_signal)(int signal, void* context), void* context) {
  for (size_t i = 0; i < size; i++) {
    char byte = bytes[i];
    if (byte == '\n') {
      if (!reader->discarding) {
        reader->line[reader->length] = '\0';
        int signal = signal_of_line(reader->line);
        if (signal != 0) on_signal(signal, context);
      }
      reader->length = 0;
      reader->discarding = false;
    } else if (reader->discarding) {
      continue;
    } else if (byte == '\0' || reader->length + 1 == sizeof reader->line) {
      /* A NUL would cut the line short; no room for it and its '\n': junk either way. */
      reader->discarding = true;
    } else {
      reader->line[reader->length++] = byte;
    }
  }
}

int run_exit_code(int wait_status) {
  if (WIFSIGNALED(wait_status)) return kShellSignalBase + WTERMSIG(wait_status);
  return WEXITSTATUS(wait_status);
}
