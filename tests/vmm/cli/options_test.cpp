#include "vmm/cli/options.hpp"

#include <gtest/gtest.h>

#include "base/util/error.hpp"
#include "vmm/machine.hpp"

namespace vmm::cli {
namespace {

ParseResult parse(const std::vector<std::string>& args) {
  return parse_command_line(args);
}

TEST(Options, Defaults) {
  auto result = parse({"--kernel", "/k"});
  ASSERT_TRUE(result.options);
  const auto& m = result.options->machine;
  EXPECT_EQ(m.kernel_path, "/k");
  EXPECT_EQ(m.cpus, 1u);
  EXPECT_EQ(m.memory_bytes, 512ull << 20);
  EXPECT_EQ(m.serial.mode, SerialConfig::Mode::kStdio);
  EXPECT_FALSE(m.cmdline);  // composed: see kernel_cmdline_test
  EXPECT_EQ(m.append, "");
  EXPECT_TRUE(m.build_initramfs);
  EXPECT_EQ(m.modules_dir, "");
  EXPECT_EQ(m.timeout_seconds, 0u);
  EXPECT_EQ(result.options->log_level, "warn");
}

TEST(Options, AppendAndModules) {
  auto result = parse({"-k", "/k", "--append", "quiet rootwait", "--modules", "/m/6.1"});
  ASSERT_TRUE(result.options) << result.error;
  const auto& m = result.options->machine;
  EXPECT_FALSE(m.cmdline);
  EXPECT_EQ(m.append, "quiet rootwait");
  EXPECT_EQ(m.modules_dir, "/m/6.1");
  EXPECT_TRUE(m.build_initramfs);
}

TEST(Options, ModulesNoneBootsWithoutAnInitramfs) {
  auto result = parse({"-k", "/k", "--modules", "none"});
  ASSERT_TRUE(result.options) << result.error;
  EXPECT_FALSE(result.options->machine.build_initramfs);
}

TEST(Options, AnEmptyCmdlineIsStillAWholeCmdline) {
  auto result = parse({"-k", "/k", "--cmdline", ""});
  ASSERT_TRUE(result.options) << result.error;
  EXPECT_EQ(result.options->machine.cmdline, "");
}

TEST(Options, CmdlineAndAppendTogetherAreRefused) {
  auto result = parse({"-k", "/k", "--cmdline", "quiet", "--append", "rw"});
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, kExitStatusUsage);
  EXPECT_NE(result.error.find("--append and --cmdline"), std::string::npos) << result.error;
}

TEST(Options, AllFlags) {
  auto result = parse({"-k", "/k", "--initrd", "/i", "--cmdline", "quiet", "--cpus", "4",
                       "--memory", "2G", "--serial", "file:/tmp/log", "--timeout", "30", "-vv"});
  ASSERT_TRUE(result.options) << result.error;
  const auto& m = result.options->machine;
  EXPECT_EQ(m.initrd_path, "/i");
  EXPECT_EQ(m.cmdline, "quiet");
  EXPECT_EQ(m.cpus, 4u);
  EXPECT_EQ(m.memory_bytes, 2ull << 30);
  EXPECT_EQ(m.serial.mode, SerialConfig::Mode::kFile);
  EXPECT_EQ(m.serial.path, "/tmp/log");
  EXPECT_EQ(m.timeout_seconds, 30u);
  EXPECT_EQ(result.options->log_level, "debug");
}

TEST(Options, DisksInOrderWithTheirOptions) {
  auto result = parse({"--kernel", "/k", "--disk", "/root.img", "-d",
                       "/data.img,readonly=on,serial=data01,io=threads", "--disk",
                       "/scratch.img,readonly=off,io=io_uring"});
  ASSERT_TRUE(result.options) << result.error;
  const auto& disks = result.options->machine.disks;
  ASSERT_EQ(disks.size(), 3u);
  EXPECT_EQ(disks[0].path, "/root.img");
  EXPECT_FALSE(disks[0].read_only);
  EXPECT_EQ(disks[0].serial, "");
  EXPECT_EQ(disks[0].io_engine, DiskConfig::IoEngine::kAuto);
  EXPECT_EQ(disks[1].path, "/data.img");
  EXPECT_TRUE(disks[1].read_only);
  EXPECT_EQ(disks[1].serial, "data01");
  EXPECT_EQ(disks[1].io_engine, DiskConfig::IoEngine::kThreadPool);
  EXPECT_FALSE(disks[2].read_only);
  EXPECT_EQ(disks[2].io_engine, DiskConfig::IoEngine::kIoUring);
}

TEST(Options, DiskSnapshotOnOffOrInMemory) {
  auto result = parse({"--kernel", "/k", "--disk", "/base.img,snapshot=on", "--disk",
                       "/b.img,snapshot=mem", "--disk", "/c.img,snapshot=on,snapshot=off", "--disk",
                       "/d.img,readonly=on,snapshot=on", "--disk", "/e.img"});
  ASSERT_TRUE(result.options) << result.error;
  const auto& disks = result.options->machine.disks;
  ASSERT_EQ(disks.size(), 5u);
  EXPECT_EQ(disks[0].snapshot, DiskConfig::Snapshot::kFile);
  EXPECT_FALSE(disks[0].read_only);
  EXPECT_EQ(disks[1].snapshot, DiskConfig::Snapshot::kMemory);
  EXPECT_EQ(disks[2].snapshot, DiskConfig::Snapshot::kOff);  // the last word wins
  EXPECT_EQ(disks[3].snapshot, DiskConfig::Snapshot::kFile);
  EXPECT_TRUE(disks[3].read_only);
  EXPECT_EQ(disks[4].snapshot, DiskConfig::Snapshot::kOff);
}

TEST(Options, DiskTakesOneValueEach) {
  // A second word after --disk is not another disk: it is an unexpected positional argument.
  auto result = parse({"--kernel", "/k", "--disk", "/a.img", "/b.img"});
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, kExitStatusUsage);
}

TEST(Options, NicsInOrder) {
  auto result =
      parse({"--kernel", "/k", "--net", "tap=tap0", "-n", "mac=02:00:00:00:00:0A,tap=tap1"});
  ASSERT_TRUE(result.options) << result.error;
  const auto& nets = result.options->machine.nets;
  ASSERT_EQ(nets.size(), 2u);
  EXPECT_EQ(nets[0].tap, "tap0");
  EXPECT_FALSE(nets[0].mac);
  EXPECT_EQ(nets[1].tap, "tap1");
  EXPECT_EQ(nets[1].mac, (std::array<uint8_t, 6>{2, 0, 0, 0, 0, 0x0a}));
}

TEST(Options, RateLimitsOnDisksAndNics) {
  auto result =
      parse({"--kernel", "/k", "--disk", "/a.img,bw=10M,iops=500,bw_burst=1M,iops_burst=50",
             "--net", "tap=tap0,rx_bw=1G,tx_iops=1000,tx_iops_burst=10"});
  ASSERT_TRUE(result.options) << result.error;
  const RateLimitConfig disk = result.options->machine.disks[0].rate_limit;
  EXPECT_EQ(disk, (RateLimitConfig{.bytes_per_second = 10 << 20,
                                   .bytes_burst = 1 << 20,
                                   .ops_per_second = 500,
                                   .ops_burst = 50}));
  const NetConfig& net = result.options->machine.nets[0];
  EXPECT_EQ(net.rx_rate_limit, RateLimitConfig{.bytes_per_second = 1ull << 30});
  EXPECT_EQ(net.tx_rate_limit, (RateLimitConfig{.ops_per_second = 1000, .ops_burst = 10}));
  EXPECT_EQ(parse({"--kernel", "/k", "--disk", "/b.img"}).options->machine.disks[0].rate_limit,
            RateLimitConfig{});
}

TEST(Options, RateLimitsRefuseZeroGarbageAndUnknownKeys) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--disk", "/a.img,bw=0"}, "--disk /a.img,bw=0: bw=0 is not a positive amount a second"},
      {{"--disk", "/a.img,iops=fast"}, "--disk /a.img,iops=fast: iops=fast is not a positive"},
      {{"--disk", "/a.img,bw"}, "--disk /a.img,bw: bw is not a positive amount"},
      {{"--disk", "/a.img,rx_bw=1M"}, "unknown option 'rx_bw=1M' (use readonly=on|off"},
      {{"--net", "tap=t,tx_bw=-1"}, "--net tap=t,tx_bw=-1: tx_bw=-1 is not a positive amount"},
      {{"--net", "tap=t,bw=1M"},
       "unknown option 'bw=1M' (use tap=NAME, mac=XX:XX:XX:XX:XX:XX, "
       "rx_bw=, rx_bw_burst=, rx_iops=, rx_iops_burst=, tx_bw="},
  };
  for (const auto& [args, message] : cases) {
    std::vector<std::string> argv{"--kernel", "/k"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto result = parse(argv);
    EXPECT_FALSE(result.options) << args[1];
    EXPECT_NE(result.error.find(message), std::string::npos) << result.error;
  }
}

TEST(Options, Vsock) {
  auto result = parse({"--kernel", "/k", "--vsock", "cid=42,socket=/tmp/v.sock"});
  ASSERT_TRUE(result.options) << result.error;
  ASSERT_TRUE(result.options->machine.vsock);
  EXPECT_EQ(result.options->machine.vsock->guest_cid, 42u);
  EXPECT_EQ(result.options->machine.vsock->uds_path, "/tmp/v.sock");
  EXPECT_FALSE(parse({"--kernel", "/k"}).options->machine.vsock);
}

TEST(Options, HelpTeachesWithAnExampleAndExitStatuses) {
  auto result = parse({"--help"});
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.output.find("--kernel"), std::string::npos);
  EXPECT_NE(result.output.find("Examples:"), std::string::npos);
  EXPECT_NE(result.output.find("124"), std::string::npos);
  EXPECT_NE(result.output.find("readonly=on"), std::string::npos);
  EXPECT_NE(result.output.find("ip tuntap add"), std::string::npos);
  EXPECT_NE(result.output.find("5    stopped by the host"), std::string::npos);
  EXPECT_NE(result.output.find("--api-socket PATH"), std::string::npos);
}

TEST(Options, ApiSocket) {
  auto result = parse({"--kernel", "/k", "--api-socket", "/run/vmm.sock"});
  ASSERT_TRUE(result.options) << result.error;
  EXPECT_EQ(result.options->machine.api_socket, "/run/vmm.sock");
  EXPECT_EQ(parse({"--kernel", "/k"}).options->machine.api_socket, "");
  EXPECT_EQ(parse({"--kernel", "/k", "--api-socket"}).exit_status, kExitStatusUsage);
}

TEST(Options, SeccompIsOnUnlessTurnedOff) {
  EXPECT_TRUE(parse({"--kernel", "/k"}).options->machine.seccomp);
  EXPECT_TRUE(parse({"--kernel", "/k", "--seccomp", "on"}).options->machine.seccomp);
  EXPECT_FALSE(parse({"--kernel", "/k", "--seccomp", "off"}).options->machine.seccomp);
  EXPECT_EQ(parse({"--kernel", "/k", "--seccomp", "log"}).exit_status, kExitStatusUsage);
  EXPECT_NE(parse({"--help"}).output.find("--seccomp"), std::string::npos);
}

TEST(Options, DebugExitOnlyWhenAskedFor) {
  EXPECT_FALSE(parse({"--kernel", "/k"}).options->machine.debug_exit);
  EXPECT_TRUE(parse({"--kernel", "/k", "--debug-exit"}).options->machine.debug_exit);
  const auto restore = parse({"--restore", "/snap", "--debug-exit"});
  ASSERT_TRUE(restore.options) << restore.error;
  EXPECT_TRUE(restore.options->restore->debug_exit);
  EXPECT_FALSE(parse({"--restore", "/snap"}).options->restore->debug_exit);
  const std::string help = parse({"--help"}).output;
  EXPECT_NE(help.find("--debug-exit"), std::string::npos);
  EXPECT_NE(help.find("chooses vmm's exit status"), std::string::npos);
  // vmm run's command reports its own status.
  EXPECT_EQ(parse({"run", "--debug-exit", "--", "true"}).exit_status, kExitStatusUsage);
}

TEST(Options, Version) {
  auto result = parse({"--version"});
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_EQ(result.output.rfind("vmm ", 0), 0u);
}

struct BadInput {
  std::vector<std::string> args;
  std::string expected;
};

class OptionsBadInput : public ::testing::TestWithParam<BadInput> {};

TEST_P(OptionsBadInput, OneLineErrorAndUsageStatus) {
  auto result = parse(GetParam().args);
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, kExitStatusUsage);
  EXPECT_NE(result.error.find(GetParam().expected), std::string::npos) << result.error;
  EXPECT_EQ(result.error.find('\n'), std::string::npos) << result.error;
}

INSTANTIATE_TEST_SUITE_P(
    All, OptionsBadInput,
    ::testing::Values(
        BadInput{{"--kernel", "/k", "--bogus"}, "--bogus"}, BadInput{{}, "--kernel is required"},
        BadInput{{"--kernel", "/k", "--memory", "lots"}, "--memory lots"},
        BadInput{{"--kernel", "/k", "--memory", "12Q"}, "--memory 12Q"},
        BadInput{{"--kernel", "/k", "--cpus", "two"}, "--cpus"},
        BadInput{{"--kernel", "/k", "--serial", "tcp:1"}, "--serial tcp:1"},
        BadInput{{"--kernel", "/k", "--log-level", "loud"}, "--log-level"},
        BadInput{{"--kernel", "/k", "--timeout", "-1"}, "--timeout"},
        BadInput{{"--kernel", "/k", "--disk", ",readonly=on"}, "needs a path"},
        BadInput{{"--kernel", "/k", "--disk", "/a,readonly=yes"}, "'readonly=yes'"},
        BadInput{{"--kernel", "/k", "--disk", "/a,cache=none"}, "'cache=none'"},
        BadInput{{"--kernel", "/k", "--disk", "/a,io=aio"}, "'io=aio'"},
        BadInput{{"--kernel", "/k", "--disk", "/a,serial"}, "'serial'"},
        BadInput{{"--kernel", "/k", "--disk", "/a,snapshot=yes"},
                 "--disk /a,snapshot=yes: unknown option 'snapshot=yes' (use readonly=on|off, "
                 "snapshot=on|off|mem"},
        BadInput{{"--kernel", "/k", "--disk", "/a,snapshot"}, "'snapshot'"},
        BadInput{{"--kernel", "/k", "--net", "tap0"}, "--net tap0: unknown option"},
        BadInput{{"--kernel", "/k", "--net", "mac=02:00:00:00:00:01"}, "needs tap=NAME"},
        BadInput{{"--kernel", "/k", "--net", "tap=t,mac=02:00"}, "mac=02:00 is not"},
        BadInput{{"--kernel", "/k", "--net", "tap="}, "unknown option 'tap='"},
        BadInput{{"--kernel", "/k", "--vsock", "cid=x,socket=/s"}, "cid=x is not"},
        BadInput{{"--kernel", "/k", "--vsock", "cid=99999999999,socket=/s"}, "is not a number"},
        BadInput{{"--kernel", "/k", "--vsock", "socket=/s"}, "needs cid=N"},
        BadInput{{"--kernel", "/k", "--vsock", "cid=3,path=/s"}, "'path=/s'"}));

TEST(Serial, Modes) {
  EXPECT_EQ(parse_serial("none")->mode, SerialConfig::Mode::kNone);
  EXPECT_EQ(parse_serial("file:x")->path, "x");
  EXPECT_FALSE(parse_serial("file:"));
  EXPECT_FALSE(parse_serial("stdout"));
}

}  // namespace
}  // namespace vmm::cli

namespace vmm::cli {
namespace {

RunContext run_context() {
  RunContext context;
  context.kernel_release = "6.1.0-test";
  context.cwd = "/home/u/src";
  context.environment = {"HOME=/home/u", "PATH=/usr/bin:/bin", "SSH_AUTH_SOCK=/run/x",
                         "DISPLAY=:0",   "PWD=/elsewhere",     "TERM=xterm",
                         "NOEQUALS"};
  context.uid = 1000;
  context.gid = 1001;
  context.groups = {27, 100};
  return context;
}

TEST(RunOptions, CommandAfterDashesWithTheCallersContext) {
  auto result = parse_command_line(
      {"run", "--kernel", "/k", "--", "sh", "-c", "exit 7", "--kernel", "not-vmm's"},
      run_context());
  ASSERT_TRUE(result.options) << result.error;
  const MachineConfig& m = result.options->machine;
  ASSERT_TRUE(m.command);
  EXPECT_EQ(m.command->argv,
            (std::vector<std::string>{"sh", "-c", "exit 7", "--kernel", "not-vmm's"}));
  EXPECT_EQ(m.command->cwd, "/home/u/src");
  EXPECT_EQ(m.command->uid, 1000u);
  EXPECT_EQ(m.command->gid, 1001u);
  EXPECT_EQ(m.command->groups, (std::vector<uint32_t>{27, 100}));
  // The host's sockets and display make no sense in the guest; PWD is the guest's.
  EXPECT_EQ(m.command->env, (std::vector<std::string>{"HOME=/home/u", "PATH=/usr/bin:/bin",
                                                      "TERM=xterm", "PWD=/home/u/src"}));
  EXPECT_EQ(m.kernel_path, "/k");
  EXPECT_EQ(m.memory_bytes, uint64_t{1} << 30);
  EXPECT_EQ(m.serial.mode, SerialConfig::Mode::kNone);
  // The host's root read-only at /, the working directory read-write at its own path.
  ASSERT_EQ(m.shares.size(), 2u);
  EXPECT_EQ(m.shares[0].host_dir, "/");
  EXPECT_EQ(m.shares[0].guest_path, "/");
  EXPECT_TRUE(m.shares[0].read_only);
  EXPECT_EQ(m.shares[1].host_dir, "/home/u/src");
  EXPECT_EQ(m.shares[1].guest_path, "/home/u/src");
  EXPECT_FALSE(m.shares[1].read_only);
  EXPECT_NE(m.shares[0].tag, m.shares[1].tag);
  EXPECT_NO_THROW(validate_config(m));
}

TEST(RunOptions, MoreSharesMountAtTheirHostPath) {
  auto result = parse_command_line(
      {"run", "-k", "/k", "--share", "data:d,readonly=on", "--share", "/srv:s", "--", "true"},
      run_context());
  ASSERT_TRUE(result.options) << result.error;
  const auto& shares = result.options->machine.shares;
  ASSERT_EQ(shares.size(), 4u);
  EXPECT_EQ(shares[2].host_dir, "/home/u/src/data");
  EXPECT_EQ(shares[2].guest_path, "/home/u/src/data");
  EXPECT_TRUE(shares[2].read_only);
  EXPECT_EQ(shares[3].guest_path, "/srv");
}

TEST(RunOptions, WithoutDashesTheCommandIsPositional) {
  auto result = parse_command_line({"run", "-k", "/k", "true"}, run_context());
  ASSERT_TRUE(result.options) << result.error;
  EXPECT_EQ(result.options->machine.command->argv, std::vector<std::string>{"true"});
}

TEST(RunOptions, BadInputIsAUsageError) {
  struct Case {
    std::vector<std::string> args;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {{"run", "-k", "/k"}, "run: needs a command"},
      {{"run", "-k", "/k", "--"}, "run: needs a command"},
      {{"run", "-k", "/k", "ls", "--", "true"}, "put the whole command after --"},
      {{"run", "-k", "/k", "--disk", "x.img", "--", "true"}, "--disk"},
      {{"run", "-k", "/k", "--share", "socket=/s,tag=t", "--", "true"}, "give HOST_DIR:TAG"},
      {{"run", "-k", "/k", "--memory", "lots", "--", "true"}, "--memory lots"},
      {{"run", "--", "true"}, "/boot/vmlinuz-6.1.0-test"},
  };
  for (const Case& c : cases) {
    auto result = parse_command_line(c.args, run_context());
    EXPECT_FALSE(result.options) << c.fragment;
    EXPECT_EQ(result.exit_status, kExitStatusUsage) << c.fragment;
    EXPECT_NE(result.error.find(c.fragment), std::string::npos) << result.error;
    EXPECT_EQ(result.error.find('\n'), std::string::npos) << result.error;
  }
}

TEST(RunOptions, HelpTeachesTheExitStatuses) {
  auto result = parse_command_line({"run", "--help"}, run_context());
  EXPECT_FALSE(result.options);
  EXPECT_EQ(result.exit_status, 0);
  EXPECT_NE(result.output.find("vmm run -- uname -r"), std::string::npos);
  EXPECT_NE(result.output.find("125"), std::string::npos);
  EXPECT_NE(result.output.find("Ctrl-C"), std::string::npos);
}

TEST(ShareOptions, DirectoryOrSocket) {
  const ShareConfig dir = parse_share("/srv/a:b,readonly=on");
  EXPECT_EQ(dir.host_dir, "/srv/a");
  EXPECT_EQ(dir.tag, "b");
  EXPECT_TRUE(dir.read_only);
  // The last colon splits: a directory may have one.
  EXPECT_EQ(parse_share("/x:y:t").host_dir, "/x:y");
  const ShareConfig socket = parse_share("socket=/run/fs.sock,tag=docs");
  EXPECT_EQ(socket.socket_path, "/run/fs.sock");
  EXPECT_EQ(socket.tag, "docs");
  EXPECT_TRUE(socket.host_dir.empty());
  for (const char* bad : {"/srv", ":t", "/srv:t,readonly=maybe", "/srv:t,socket=/s", "tag=x",
                          "socket=/s,tag=t,readonly=on", "/srv:t,bogus"}) {
    EXPECT_THROW(parse_share(bad), Error) << bad;
  }
}

TEST(ShareOptions, VhostUser) {
  const VhostUserConfig fs = parse_vhost_user("fs,socket=/s,tag=t");
  EXPECT_EQ(fs.type, VhostUserConfig::Type::kFs);
  EXPECT_EQ(fs.socket_path, "/s");
  EXPECT_EQ(fs.tag, "t");
  EXPECT_EQ(parse_vhost_user("blk,socket=/b").type, VhostUserConfig::Type::kBlock);
  for (const char* bad :
       {"net,socket=/s", "fs,socket=/s", "blk,socket=/b,tag=t", "blk", "fs,tag=t"}) {
    EXPECT_THROW(parse_vhost_user(bad), Error) << bad;
  }
  auto result = parse_command_line({"-k", "/k", "--share", "/srv:a", "--vhost-user",
                                    "blk,socket=/b", "--console", "--virtiofsd", "/v"});
  ASSERT_TRUE(result.options) << result.error;
  const MachineConfig& m = result.options->machine;
  EXPECT_EQ(m.shares.size(), 1u);
  EXPECT_EQ(m.vhost_user.size(), 1u);
  EXPECT_TRUE(m.console.enabled);
  EXPECT_EQ(m.virtiofsd_path, "/v");
  // --console takes the terminal: the serial console is none unless given.
  EXPECT_EQ(m.serial.mode, SerialConfig::Mode::kNone);
}

TEST(JailOptions, DirectoryIdsAndLimits) {
  const security::JailConfig jail = parse_jail(
      "jails/vm1/,uid=1000,gid=1001,memory=1G,cpus=1.5,pids=64,nofile=256,fsize=4G", "/srv");
  EXPECT_EQ(jail.dir, "/srv/jails/vm1");
  EXPECT_EQ(jail.uid, 1000u);
  EXPECT_EQ(jail.gid, 1001u);
  EXPECT_EQ(jail.cgroup, "vm1");  // the directory's name
  EXPECT_EQ(jail.memory_max, uint64_t{1} << 30);
  EXPECT_EQ(jail.cpu_quota_us, 150'000u);
  EXPECT_EQ(jail.pids_max, 64u);
  EXPECT_EQ(jail.nofile, 256u);
  EXPECT_EQ(jail.fsize, uint64_t{4} << 30);
  EXPECT_TRUE(jail.has_cgroup_limits());

  const security::JailConfig plain = parse_jail("/j,uid=5,gid=6,cgroup=web-1", "/");
  EXPECT_EQ(plain.cgroup, "web-1");
  EXPECT_FALSE(plain.has_cgroup_limits());
  EXPECT_FALSE(plain.nofile);
}

TEST(JailOptions, BadValuesAreRefusedNamingThePart) {
  const auto error_of = [](const std::string& text) {
    try {
      parse_jail(text, "/");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(error_of("/j,uid=0,gid=5"),
            "--jail /j,uid=0,gid=5: uid=0 is root's; give an unprivileged one");
  EXPECT_EQ(error_of("/j,uid=5"), "--jail /j,uid=5: needs uid=N,gid=N (an unprivileged user)");
  EXPECT_EQ(error_of(",uid=5,gid=5").rfind("--jail ,uid=5,gid=5: needs a directory first", 0), 0u);
  EXPECT_EQ(error_of("/,uid=5,gid=5"), "--jail /,uid=5,gid=5: the jail's directory can't be /");
  EXPECT_NE(error_of("/j,uid=x,gid=5").find("uid=x is not a number"), std::string::npos);
  EXPECT_NE(error_of("/j,uid=5,gid=5,cpus=0.001").find("cpus=0.001 is not a number of CPUs"),
            std::string::npos);
  EXPECT_NE(error_of("/j,uid=5,gid=5,memory=lots").find("memory=lots is not a size"),
            std::string::npos);
  EXPECT_NE(error_of("/j,uid=5,gid=5,swap=1G").find("unknown option 'swap=1G'"), std::string::npos);
  EXPECT_NE(error_of("/j/.x,uid=5,gid=5").find("'.x' can't name a cgroup"), std::string::npos);
  EXPECT_NE(error_of("/j,uid=5,gid=5,cgroup=../x").find("'../x' can't name a cgroup"),
            std::string::npos);
}

TEST(JailOptions, OnTheCommandLine) {
  auto result = parse({"-k", "/k", "--jail", "/j,uid=7,gid=8"});
  ASSERT_TRUE(result.options) << result.error;
  ASSERT_TRUE(result.options->jail);
  EXPECT_EQ(result.options->jail->uid, 7u);

  result = parse({"-k", "/k", "--jail", "/j,uid=7"});
  EXPECT_EQ(result.exit_status, kExitStatusUsage);
  EXPECT_EQ(result.error, "--jail /j,uid=7: needs uid=N,gid=N (an unprivileged user)");

  result = parse({"--restore", "/snap", "--jail", "/j,uid=7,gid=8"});
  ASSERT_TRUE(result.options) << result.error;
  EXPECT_TRUE(result.options->jail);
  ASSERT_TRUE(result.options->restore);
  EXPECT_EQ(result.options->restore->snapshot_dir, "/snap");

  // vmm run's guest needs virtiofsds, which need root: it has no --jail.
  result = parse({"run", "--jail", "/j,uid=7,gid=8", "--", "true"});
  EXPECT_EQ(result.exit_status, kExitStatusUsage);
}

}  // namespace
}  // namespace vmm::cli
