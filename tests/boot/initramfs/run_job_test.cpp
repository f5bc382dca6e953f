#include "boot/initramfs/run_job.hpp"

#include <gtest/gtest.h>

#include <string>

#include "tests/boot/test_images.hpp"

namespace vmm::boot {
namespace {

using test_images::error_of;

RunJob sample_job() {
  return {.uid = 1000,
          .gid = 100,
          .groups = {24, 27},
          .cwd = "/home/me/src",
          .mounts = {{"vmm-root", "/", true}, {"vmm-cwd", "/home/me/src", false}},
          .argv = {"make", "-j2"},
          .env = {"PATH=/usr/bin:/bin", "EMPTY="}};
}

std::string text_of(const std::vector<uint8_t>& bytes) {
  return {bytes.begin(), bytes.end()};
}

std::string encode_error(const RunJob& job) {
  return error_of([&] { encode_run_job(job); });
}

TEST(RunJobTest, EncodesTheAbisStringsInOrder) {
  using namespace std::string_literals;
  EXPECT_EQ(text_of(encode_run_job(sample_job())),
            "vmm-run-1\0"
            "1000\0"
            "100\0"
            "24,27\0"
            "/home/me/src\0"
            "2\0"
            "vmm-root\0/\0ro\0"
            "vmm-cwd\0/home/me/src\0rw\0"
            "2\0make\0-j2\0"
            "2\0PATH=/usr/bin:/bin\0EMPTY=\0"s);
}

TEST(RunJobTest, NoGroupsAndNoEnvironment) {
  using namespace std::string_literals;
  RunJob job = sample_job();
  job.groups.clear();
  job.mounts.resize(1);
  job.argv = {"true"};
  job.env.clear();
  EXPECT_EQ(text_of(encode_run_job(job)),
            "vmm-run-1\0001000\000100\0\0/home/me/src\0001\0vmm-root\0/\0ro\0001\0true\0000\0"s);
}

TEST(RunJobTest, RefusesWhatTheFormatCannotCarry) {
  using namespace std::string_literals;
  RunJob job = sample_job();
  job.argv[1] = "a\0b"s;
  EXPECT_EQ(encode_error(job), "run job: argv[1] holds a NUL byte");
  job = sample_job();
  job.env[0] = "A=\0"s;
  EXPECT_EQ(encode_error(job), "run job: environment entry 0 holds a NUL byte");
  job = sample_job();
  job.cwd = "/x\0"s;
  EXPECT_EQ(encode_error(job), "run job: cwd holds a NUL byte");
  job = sample_job();
  job.mounts[1].path = "/x\0"s;
  EXPECT_EQ(encode_error(job), "run job: mount 1's path holds a NUL byte");
}

TEST(RunJobTest, RefusesWhatTheGuestWouldRefuse) {
  RunJob job = sample_job();
  job.argv.clear();
  EXPECT_EQ(encode_error(job), "run job: no command to run");
  job.argv = {""};
  EXPECT_EQ(encode_error(job), "run job: no command to run");

  job = sample_job();
  job.cwd = "src";
  EXPECT_EQ(encode_error(job), "run job: cwd 'src' is not an absolute path");
  job.cwd = "/a/../b";
  EXPECT_EQ(encode_error(job), "run job: cwd '/a/../b' has a '..' part");
  job.cwd = "/a/..";
  EXPECT_EQ(encode_error(job), "run job: cwd '/a/..' has a '..' part");
  job.cwd = "/a/..b/.../c.";  // only ".." itself climbs
  EXPECT_NO_THROW(encode_run_job(job));

  job = sample_job();
  job.mounts[1].path = "home";
  EXPECT_EQ(encode_error(job), "run job: mount path 'home' is not an absolute path");
  job.mounts[1].path = "/";
  EXPECT_EQ(encode_error(job), "run job: only the first mount may be \"/\"");
  job.mounts[1].path = "/x";
  job.mounts[1].tag = "";
  EXPECT_EQ(encode_error(job), "run job: mount tag '' is not 1 to 36 bytes");
  job.mounts[1].tag = std::string(37, 't');
  EXPECT_EQ(encode_error(job),
            "run job: mount tag '" + std::string(37, 't') + "' is not 1 to 36 bytes");
  job.mounts[1].tag = std::string(36, 't');
  EXPECT_NO_THROW(encode_run_job(job));

  job = sample_job();
  job.env.push_back("NOVALUE");
  EXPECT_EQ(encode_error(job), "run job: environment entry 'NOVALUE' is not NAME=value");
  job.env.back() = "=x";
  EXPECT_EQ(encode_error(job), "run job: environment entry '=x' is not NAME=value");

  job = sample_job();
  job.uid = UINT32_MAX;
  EXPECT_EQ(encode_error(job), "run job: uid 4294967295 is (uid_t)-1, which no process can have");
  job = sample_job();
  job.groups.push_back(UINT32_MAX);
  EXPECT_EQ(encode_error(job), "run job: group 4294967295 is (uid_t)-1, which no process can have");
}

TEST(RunJobTest, TheFirstMountIsTheReadOnlyRoot) {
  RunJob job = sample_job();
  const std::string expected = "run job: the first mount must be the root, \"/\" read-only";
  job.mounts.clear();
  EXPECT_EQ(encode_error(job), expected);
  job = sample_job();
  job.mounts[0].read_only = false;
  EXPECT_EQ(encode_error(job), expected);
  job = sample_job();
  std::swap(job.mounts[0], job.mounts[1]);
  EXPECT_EQ(encode_error(job), expected);
  job = sample_job();
  job.mounts.resize(65, {"t", "/t", true});
  EXPECT_EQ(encode_error(job), "run job: 65 mounts, more than the 64 the guest takes");
}

TEST(RunJobTest, AJobTooLargeForTheGuest) {
  RunJob job = sample_job();
  job.env.push_back("BIG=" + std::string(size_t{4} << 20, 'x'));
  EXPECT_EQ(encode_error(job).rfind("run job: 4194", 0), 0u) << encode_error(job);
}

}  // namespace
}  // namespace vmm::boot
