#include "boot/initramfs/init/init_run.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <string>
#include <vector>

#include "boot/initramfs/run_job.hpp"

namespace vmm::boot {
namespace {

using namespace std::string_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A parse of `bytes`, owning them (the job points into them) and what the parse allocated.
struct ParsedJob {
  explicit ParsedJob(const std::string& text) : bytes(text.begin(), text.end()) {
    ok = run_job_parse(bytes.data(), bytes.size(), &job, error, sizeof error);
  }
  explicit ParsedJob(const std::vector<uint8_t>& encoded)
      : ParsedJob(std::string(encoded.begin(), encoded.end())) {}
  ~ParsedJob() { run_job_free(&job); }
  ParsedJob(const ParsedJob&) = delete;
  ParsedJob& operator=(const ParsedJob&) = delete;

  std::vector<char> bytes;
  run_job job{};
  char error[256] = "";
  bool ok = false;
};

std::vector<std::string> strings_of(char** strings, size_t count) {
  std::vector<std::string> result(strings, strings + count);
  EXPECT_EQ(strings[count], nullptr);
  return result;
}

const std::string kHead =
    "vmm-run-1\0"
    "1000\0"
    "100\0"
    "24,27\0"
    "/home/me\0"s;
const std::string kRootMount = "1\0vmm-root\0/\0ro\0"s;
const std::string kCommand = "1\0true\0"s;
const std::string kNoEnv = "0\0"s;

std::string job_text(const std::string& head = kHead, const std::string& mounts = kRootMount,
                     const std::string& command = kCommand, const std::string& env = kNoEnv) {
  return head + mounts + command + env;
}

std::string error_parsing(const std::string& text) {
  ParsedJob parsed(text);
  EXPECT_FALSE(parsed.ok);
  return parsed.error;
}

// What the host encodes is what the guest reads.
TEST(InitRunTest, ParsesWhatTheHostEncodes) {
  const RunJob sent{.uid = 1000,
                    .gid = 100,
                    .groups = {24, 27, 4294967294},
                    .cwd = "/home/me/src",
                    .mounts = {{"vmm-root", "/", true}, {"vmm-cwd", "/home/me/src", false}},
                    .argv = {"make", "-j2", ""},
                    .env = {"PATH=/usr/bin:/bin", "EMPTY=", "A==b"}};
  ParsedJob parsed(encode_run_job(sent));
  ASSERT_TRUE(parsed.ok) << parsed.error;
  const run_job& job = parsed.job;
  EXPECT_EQ(job.uid, 1000u);
  EXPECT_EQ(job.gid, 100u);
  EXPECT_THAT(std::vector<gid_t>(job.groups, job.groups + job.group_count),
              ElementsAre(24u, 27u, 4294967294u));
  EXPECT_STREQ(job.cwd, "/home/me/src");
  ASSERT_EQ(job.mount_count, 2u);
  EXPECT_STREQ(job.mounts[0].tag, "vmm-root");
  EXPECT_STREQ(job.mounts[0].path, "/");
  EXPECT_TRUE(job.mounts[0].read_only);
  EXPECT_STREQ(job.mounts[1].tag, "vmm-cwd");
  EXPECT_STREQ(job.mounts[1].path, "/home/me/src");
  EXPECT_FALSE(job.mounts[1].read_only);
  EXPECT_THAT(strings_of(job.argv, job.argc), ElementsAre("make", "-j2", ""));
  EXPECT_THAT(strings_of(job.env, job.envc), ElementsAre("PATH=/usr/bin:/bin", "EMPTY=", "A==b"));
}

TEST(InitRunTest, NoGroupsAndNoEnvironment) {
  ParsedJob parsed(
      job_text("vmm-run-1\0"
               "0\0"
               "0\0"
               "\0"
               "/\0"s));
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(parsed.job.uid, 0u);
  EXPECT_EQ(parsed.job.group_count, 0u);
  EXPECT_EQ(parsed.job.envc, 0u);
  EXPECT_EQ(parsed.job.env[0], nullptr);
}

TEST(InitRunTest, EveryTruncationIsAnError) {
  const std::string whole = job_text();
  ASSERT_TRUE(ParsedJob(whole).ok);
  for (size_t size = 0; size < whole.size(); ++size) {
    ParsedJob parsed(whole.substr(0, size));
    EXPECT_FALSE(parsed.ok) << size;
    EXPECT_THAT(parsed.error, HasSubstr("run job: ")) << size;
  }
  EXPECT_EQ(error_parsing(""), "run job: truncated before the magic");
  EXPECT_EQ(error_parsing(whole.substr(0, whole.size() - 1)),
            "run job: envc has no terminating NUL");
  EXPECT_EQ(error_parsing(whole.substr(0, whole.size() - 2)), "run job: truncated before envc");
}

TEST(InitRunTest, NothingMayFollowTheEnvironment) {
  EXPECT_EQ(error_parsing(job_text() + "x"), "run job: 1 bytes after the environment");
  EXPECT_EQ(error_parsing(job_text() + "\0"s), "run job: 1 bytes after the environment");
}

TEST(InitRunTest, CountsBeyondTheDataAreRefusedBeforeAnyAllocation) {
  // 7 bytes left after argc ("true\0" and envc's "0\0"): room for 7 strings at most.
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, "8\0true\0"s)),
            "run job: argc 8 is more than the job holds");
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, "18446744073709551615\0true\0"s)),
            "run job: argc 18446744073709551615 is more than the job holds");
  EXPECT_THAT(error_parsing(job_text(kHead, kRootMount, "18446744073709551616\0true\0"s)),
              HasSubstr("argc '18446744073709551616' is not a number"));
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, kCommand, "1\0"s)),
            "run job: envc 1 is more than the job holds");
  // Enough bytes for the count, too few strings: the strings run out.
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, "3\0true\0"s, "0\0"s)),
            "run job: truncated before an argument");
  EXPECT_EQ(error_parsing(job_text(kHead, "65\0"s + std::string(200, 'x'))),
            "run job: mount count '65' is not a number from 0 to 64");
  // The second mount takes argc's and argv's strings as its tag and path.
  EXPECT_EQ(error_parsing(job_text(kHead, "2\0vmm-root\0/\0ro\0"s)),
            "run job: mount path 'true' is not an absolute path");
}

TEST(InitRunTest, NumbersAreCanonicalDecimals) {
  for (const std::string uid :
       {"", "-1", "+1", " 1", "1 ", "01", "0x10", "4294967295", "99999999999999999999999", "1e3"}) {
    const std::string text = job_text("vmm-run-1\0"s + uid +
                                      "\0"
                                      "100\0"
                                      "\0"
                                      "/\0"s);
    EXPECT_THAT(error_parsing(text), HasSubstr("run job: uid '")) << uid;
  }
  ParsedJob largest(
      job_text("vmm-run-1\0"
               "4294967294\0"
               "0\0"
               "\0"
               "/\0"s));
  ASSERT_TRUE(largest.ok) << largest.error;
  EXPECT_EQ(largest.job.uid, 4294967294u);
  for (const std::string groups : {",", "1,", ",1", "1,,2", "1;2", "4294967295", "-5"}) {
    const std::string text = job_text(
        "vmm-run-1\0"
        "0\0"
        "0\0"s +
        groups + "\0/\0"s);
    EXPECT_THAT(error_parsing(text), HasSubstr("run job: group '")) << groups;
  }
}

TEST(InitRunTest, TooManyGroups) {
  std::string groups = "0";
  for (int i = 0; i < RUN_JOB_MAX_GROUPS; ++i) groups += ",0";
  EXPECT_EQ(error_parsing(job_text("vmm-run-1\0"
                                   "0\0"
                                   "0\0"s +
                                   groups + "\0/\0"s)),
            "run job: 65537 supplementary groups, more than 65536");
}

TEST(InitRunTest, ChecksTheMagic) {
  EXPECT_EQ(error_parsing("vmm-run-2\0"s + job_text().substr(10)),
            "run job: starts with 'vmm-run-2', not vmm-run-1");
}

TEST(InitRunTest, PathsAreAbsoluteWithoutDotDot) {
  EXPECT_EQ(error_parsing(job_text("vmm-run-1\0"
                                   "0\0"
                                   "0\0"
                                   "\0"
                                   "home\0"s)),
            "run job: cwd 'home' is not an absolute path");
  EXPECT_EQ(error_parsing(job_text("vmm-run-1\0"
                                   "0\0"
                                   "0\0"
                                   "\0"
                                   "/a/../..\0"s)),
            "run job: cwd '/a/../..' has a '..' part");
  EXPECT_EQ(error_parsing(job_text(kHead, "2\0vmm-root\0/\0ro\0t\0/x/..\0rw\0"s)),
            "run job: mount path '/x/..' has a '..' part");
  EXPECT_TRUE(ParsedJob(job_text(kHead, "2\0vmm-root\0/\0ro\0t\0/x/..y/...\0rw\0"s)).ok);
}

TEST(InitRunTest, TheFirstMountIsTheReadOnlyRootAndTheOnlyRoot) {
  EXPECT_EQ(error_parsing(job_text(kHead, "0\0"s)),
            "run job: no mounts (the first must be the root)");
  EXPECT_EQ(error_parsing(job_text(kHead, "1\0vmm-root\0/\0rw\0"s)),
            "run job: the first mount is / rw, not the root (\"/\" read-only)");
  EXPECT_EQ(error_parsing(job_text(kHead, "1\0vmm-root\0/home\0ro\0"s)),
            "run job: the first mount is /home ro, not the root (\"/\" read-only)");
  EXPECT_EQ(error_parsing(job_text(kHead, "2\0vmm-root\0/\0ro\0t\0/\0ro\0"s)),
            "run job: mount t: only the first mount may be \"/\"");
  EXPECT_EQ(error_parsing(job_text(kHead, "2\0vmm-root\0/\0ro\0t\0/x\0RW\0"s)),
            "run job: mount /x: mode 'RW' is neither ro nor rw");
  EXPECT_EQ(error_parsing(job_text(kHead, "2\0vmm-root\0/\0ro\0\0/x\0rw\0"s)),
            "run job: mount tag '' is not 1 to 36 bytes");
  EXPECT_EQ(error_parsing(
                job_text(kHead, "2\0vmm-root\0/\0ro\0"s + std::string(37, 't') + "\0/x\0rw\0"s)),
            "run job: mount tag '" + std::string(37, 't') + "' is not 1 to 36 bytes");
}

TEST(InitRunTest, TheCommandAndEnvironmentAreChecked) {
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, "0\0"s)), "run job: no command to run");
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, "1\0\0"s)), "run job: no command to run");
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, kCommand, "1\0NOVALUE\0"s)),
            "run job: environment entry 'NOVALUE' is not NAME=value");
  EXPECT_EQ(error_parsing(job_text(kHead, kRootMount, kCommand, "1\0=x\0"s)),
            "run job: environment entry '=x' is not NAME=value");
}

TEST(InitRunTest, AJobLargerThanTheAbisLimit) {
  std::string text = job_text(kHead, kRootMount, kCommand, "1\0A="s);
  text += std::string(VMM_RUN_JOB_MAX_SIZE - text.size(), 'x');
  EXPECT_EQ(error_parsing(text + "\0"s), "run job: 4194305 bytes, more than 4194304");
  text.back() = '\0';
  EXPECT_TRUE(ParsedJob(text).ok);
}

// Control lines, fed as the host's writes may split them.
std::vector<int> signals_of(const std::vector<std::string>& writes) {
  run_control_reader reader{};
  std::vector<int> signals;
  for (const std::string& bytes : writes) {
    run_control_feed(
        &reader, bytes.data(), bytes.size(),
        [](int signal, void* context) {
          static_cast<std::vector<int>*>(context)->push_back(signal);
        },
        &signals);
  }
  return signals;
}

TEST(InitRunTest, ControlLinesCarrySignals) {
  EXPECT_THAT(signals_of({"signal 2\nsignal 15\n"}), ElementsAre(2, 15));
  EXPECT_THAT(signals_of({"sig", "nal 9", "\n", "signal 64\n"}), ElementsAre(9, 64));
  EXPECT_THAT(signals_of({"signal 1"}), ElementsAre());  // not a line until its '\n'
}

TEST(InitRunTest, JunkControlLinesAreIgnored) {
  EXPECT_THAT(signals_of({"signal 0\nsignal 65\nsignal -1\nsignal 02\nsignal 2 \nSIGNAL 2\n"
                          "signal\nsignal \nexit 0\n\n\r\nsignal 99999999999999999999999\n"
                          "signal 3\n"}),
              ElementsAre(3));
  EXPECT_THAT(signals_of({"signal 2\0\nsignal 4\n"s}), ElementsAre(4));
}

TEST(InitRunTest, ALineTooLongIsDroppedWhole) {
  // The rest of a line too long, however it is split, is no line of its own.
  EXPECT_THAT(signals_of({std::string(1000, 'x'), "signal 6\n", "signal 7\n"}), ElementsAre(7));
  EXPECT_THAT(signals_of({std::string(VMM_RUN_CONTROL_LINE_MAX - 8, 'x') + "signal 8\nsignal 9\n"}),
              ElementsAre(9));
  EXPECT_THAT(signals_of({std::string(VMM_RUN_CONTROL_LINE_MAX - 9, '0') + "\n"}), ElementsAre());
}

TEST(InitRunTest, ExitCodesAreAShells) {
  EXPECT_EQ(run_exit_code(W_EXITCODE(0, 0)), 0);
  EXPECT_EQ(run_exit_code(W_EXITCODE(3, 0)), 3);
  EXPECT_EQ(run_exit_code(W_EXITCODE(255, 0)), 255);
  EXPECT_EQ(run_exit_code(W_EXITCODE(0, SIGKILL)), 137);
  EXPECT_EQ(run_exit_code(W_EXITCODE(0, SIGSEGV) | WCOREFLAG), 139);
}

}  // namespace
}  // namespace vmm::boot
