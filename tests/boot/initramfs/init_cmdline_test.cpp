#include "boot/initramfs/init/init_cmdline.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using ::testing::HasSubstr;

// A parse of `line` as disk mode takes it (root= checked), owning the text the result points into.
struct Parsed {
  explicit Parsed(std::string line) : text(line.begin(), line.end()) {
    text.push_back('\0');
    parsed = init_cmdline_parse(text.data(), &cmdline, error, sizeof error);
    ok = parsed && init_cmdline_check_root(&cmdline, error, sizeof error);
  }
  std::string options(const char* module, size_t size = 0) {
    std::vector<char> buffer(size != 0 ? size : text.size());
    char options_error[256] = "";
    if (!init_cmdline_module_options(&cmdline, module, buffer.data(), buffer.size(), options_error,
                                     sizeof options_error))
      return std::string("error: ") + options_error;
    return buffer.data();
  }
  std::vector<char> text;
  init_cmdline cmdline{};
  char error[256] = "";
  bool parsed = false;  // without the root= check, as run mode takes it
  bool ok = false;
};

std::string or_null(const char* text) {
  return text != nullptr ? text : "(null)";
}

TEST(InitCmdlineTest, ReadsTheRootSettings) {
  Parsed parsed(
      "console=ttyS0 panic=-1 root=/dev/vda1 rootfstype=ext4 rootflags=data=journal rw rootwait "
      "rootdelay=3 init=/bin/sh\n");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(or_null(parsed.cmdline.root), "/dev/vda1");
  EXPECT_EQ(or_null(parsed.cmdline.rootfstype), "ext4");
  EXPECT_EQ(or_null(parsed.cmdline.rootflags), "data=journal");
  EXPECT_EQ(or_null(parsed.cmdline.init), "/bin/sh");
  EXPECT_TRUE(parsed.cmdline.read_write);
  EXPECT_TRUE(parsed.cmdline.rootwait);
  EXPECT_EQ(parsed.cmdline.rootdelay, 3u);
  EXPECT_FALSE(parsed.cmdline.quiet);
}

TEST(InitCmdlineTest, DefaultsAreTheKernels) {
  Parsed parsed("root=/dev/vda");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_FALSE(parsed.cmdline.read_write);
  EXPECT_FALSE(parsed.cmdline.rootwait);
  EXPECT_EQ(parsed.cmdline.rootdelay, 0u);
  EXPECT_EQ(parsed.cmdline.rootfstype, nullptr);
  EXPECT_EQ(parsed.cmdline.rootflags, nullptr);
  EXPECT_EQ(parsed.cmdline.init, nullptr);
  EXPECT_EQ(parsed.cmdline.module_param_count, 0u);
}

TEST(InitCmdlineTest, TheLastRoRwAndRootWin) {
  Parsed read_only("root=/dev/vda rw root=/dev/vdb ro quiet");
  ASSERT_TRUE(read_only.ok) << read_only.error;
  EXPECT_EQ(or_null(read_only.cmdline.root), "/dev/vdb");
  EXPECT_FALSE(read_only.cmdline.read_write);
  EXPECT_TRUE(read_only.cmdline.quiet);
  Parsed read_write("ro root=/dev/vda rw");
  ASSERT_TRUE(read_write.ok) << read_write.error;
  EXPECT_TRUE(read_write.cmdline.read_write);
}

TEST(InitCmdlineTest, OnlyBareWordsAreFlags) {
  Parsed parsed("root=/dev/vda rw ro=1 rootwait=5 quiet=no");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_TRUE(parsed.cmdline.read_write);
  EXPECT_FALSE(parsed.cmdline.rootwait);
  EXPECT_FALSE(parsed.cmdline.quiet);
}

TEST(InitCmdlineTest, QuotedValuesKeepTheirSpaces) {
  Parsed parsed(
      "root=/dev/vda  rootflags=\"a b\"\t\"init=/bin/my init\" virtio_net.msg=\"hello  world\"");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(or_null(parsed.cmdline.rootflags), "a b");
  EXPECT_EQ(or_null(parsed.cmdline.init), "/bin/my init");
  ASSERT_EQ(parsed.cmdline.module_param_count, 1u);
  EXPECT_EQ(or_null(parsed.cmdline.module_params[0].value), "hello  world");
  // Quoted again for finit_module, which splits its options the same way.
  EXPECT_EQ(parsed.options("virtio_net"), "msg=\"hello  world\"");
}

TEST(InitCmdlineTest, WordsAfterDoubleDashAreTheInits) {
  Parsed parsed("root=/dev/vda -- root=/dev/vdb rw virtio_blk.x=1");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(or_null(parsed.cmdline.root), "/dev/vda");
  EXPECT_FALSE(parsed.cmdline.read_write);
  EXPECT_EQ(parsed.cmdline.module_param_count, 0u);
  // A word that merely starts with two dashes is no end marker.
  Parsed dashes("--verbose root=/dev/vdc");
  ASSERT_TRUE(dashes.ok) << dashes.error;
  EXPECT_EQ(or_null(dashes.cmdline.root), "/dev/vdc");
}

TEST(InitCmdlineTest, ModuleParametersGoToTheirModuleDashOrUnderscore) {
  Parsed parsed(
      "virtio-net.csum=0 root=/dev/vda virtio_blk.queue_depth=64 virtio_net.gso=0 "
      "virtio_net.napi_tx vmw_vsock_virtio_transport.x=1 .odd=1 odd.=2 init=/sbin/init.sh");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(parsed.options("virtio_net"), "csum=0 gso=0 napi_tx");
  EXPECT_EQ(parsed.options("virtio-net"), "csum=0 gso=0 napi_tx");
  EXPECT_EQ(parsed.options("virtio_blk"), "queue_depth=64");
  EXPECT_EQ(parsed.options("vmw_vsock_virtio_transport"), "x=1");
  EXPECT_EQ(parsed.options("virtio"), "");
  EXPECT_EQ(parsed.options("virtio_mmio"), "");
  // `.odd=1` and `odd.=2` name no module or no parameter; init='s dot is in its value.
  EXPECT_EQ(parsed.cmdline.module_param_count, 5u);
  EXPECT_EQ(or_null(parsed.cmdline.init), "/sbin/init.sh");
}

TEST(InitCmdlineTest, ModuleOptionsThatDoNotFitAreAnError) {
  Parsed parsed("root=/dev/vda virtio_net.csum=0 virtio_net.gso=0");
  ASSERT_TRUE(parsed.ok) << parsed.error;
  EXPECT_EQ(parsed.options("virtio_net", 12),
            "error: virtio_net: its parameters take more than 11 bytes");
  EXPECT_EQ(parsed.options("virtio_net", 13), "csum=0 gso=0");
}

TEST(InitCmdlineTest, TooManyModuleParametersAreAnError) {
  std::string line = "root=/dev/vda";
  for (int i = 0; i <= INIT_CMDLINE_MAX_MODULE_PARAMS; ++i)
    line += " m.p" + std::to_string(i) + "=1";
  Parsed parsed(line);
  EXPECT_FALSE(parsed.ok);
  EXPECT_THAT(parsed.error, HasSubstr("more than 64 module parameters"));
}

TEST(InitCmdlineTest, RootMustBeADevPath) {
  for (const char* root :
       {"UUID=0a1b-2c3d", "LABEL=root", "PARTUUID=1234-01", "vda1", "8:1", "/dev/"}) {
    Parsed parsed(std::string("console=ttyS0 root=") + root);
    EXPECT_FALSE(parsed.ok) << root;
    EXPECT_THAT(parsed.error, HasSubstr(std::string("root=") + root +
                                        ": vmm's initramfs takes "
                                        "only a /dev path"));
  }
}

TEST(InitCmdlineTest, NoRootIsAnError) {
  Parsed parsed("console=ttyS0 panic=-1 rw\n");
  EXPECT_FALSE(parsed.ok);
  EXPECT_THAT(parsed.error, HasSubstr("no root= on the kernel command line"));
  Parsed bare("root");
  EXPECT_FALSE(bare.ok);
}

// `vmm run` boots with no root= (its root is a virtio-fs share): only disk mode checks it.
TEST(InitCmdlineTest, RunModeNeedsNoRoot) {
  Parsed parsed("console=ttyS0 virtio_console.x=1");
  EXPECT_TRUE(parsed.parsed) << parsed.error;
  EXPECT_FALSE(parsed.ok);
  EXPECT_EQ(parsed.cmdline.root, nullptr);
  EXPECT_EQ(parsed.options("virtio_console"), "x=1");
}

TEST(InitCmdlineTest, RootdelayMustBeSeconds) {
  for (const char* word : {"rootdelay=abc", "rootdelay=", "rootdelay", "rootdelay=-1",
                           "rootdelay=5s", "rootdelay=86401", "rootdelay=99999999999999999999"}) {
    Parsed parsed(std::string("root=/dev/vda ") + word);
    EXPECT_FALSE(parsed.ok) << word;
    EXPECT_THAT(parsed.error, HasSubstr("not a number of seconds")) << word;
  }
  Parsed longest("root=/dev/vda rootdelay=86400");
  ASSERT_TRUE(longest.ok) << longest.error;
  EXPECT_EQ(longest.cmdline.rootdelay, 86400u);
}

TEST(InitCmdlineTest, EmptyAndBlankLinesHaveNoRoot) {
  for (const char* line : {"", " \t\n", "\"\""}) {
    Parsed parsed(line);
    EXPECT_FALSE(parsed.ok) << '[' << line << ']';
  }
}

}  // namespace
