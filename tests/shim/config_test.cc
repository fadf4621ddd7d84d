// Unit tests for shim/config: every SHAKE_* variable's parsing and its one-line errors.
#include "shim/config.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace shake::shim {
namespace {

std::map<std::string, std::string>* g_env;
char* FakeGetenv(const char* name) {
  auto it = g_env->find(name);
  return it == g_env->end() ? nullptr : it->second.data();
}

struct Parsed {
  Config config;
  std::optional<ConfigError> error;
};
Parsed Parse(std::map<std::string, std::string> env) {
  g_env = &env;
  Parsed p;
  p.error = ParseConfig(&FakeGetenv, p.config);
  g_env = nullptr;
  return p;
}

TEST(Config, NothingSetIsNotConfigured) {
  Parsed p = Parse({});
  EXPECT_FALSE(p.error);
  EXPECT_FALSE(p.config.configured());
  EXPECT_EQ(p.config.log, LogLevel::kWarn);
}

TEST(Config, FullTunConfiguration) {
  Parsed p = Parse({{"SHAKE_DEVICE", "tun:shk0"},
                    {"SHAKE_ADDR", "198.18.0.2/24"},
                    {"SHAKE_GATEWAY", "198.18.0.1"},
                    {"SHAKE_LOG", "debug"},
                    {"SHAKE_PCAP", "/tmp/x.pcap"},
                    {"SHAKE_TRACE", "/tmp/x.trace"},
                    {"SHAKE_FALLBACK", "kernel"}});
  ASSERT_FALSE(p.error) << p.error->Line();
  EXPECT_EQ(p.config.device, DeviceKind::kTun);
  EXPECT_EQ(p.config.ifname, "shk0");
  EXPECT_EQ(FormatIpv4(p.config.addr), "198.18.0.2");
  EXPECT_EQ(p.config.prefix_len, 24);
  ASSERT_TRUE(p.config.gateway);
  EXPECT_EQ(FormatIpv4(*p.config.gateway), "198.18.0.1");
  EXPECT_EQ(p.config.log, LogLevel::kDebug);
  EXPECT_EQ(p.config.pcap, "/tmp/x.pcap");
  EXPECT_EQ(p.config.trace, "/tmp/x.trace");
  EXPECT_TRUE(p.config.fallback_kernel);
}

TEST(Config, PacketDevice) {
  Parsed p = Parse({{"SHAKE_DEVICE", "packet:veth0"}, {"SHAKE_ADDR", "198.19.1.9/16"}});
  ASSERT_FALSE(p.error);
  EXPECT_EQ(p.config.device, DeviceKind::kPacket);
  EXPECT_EQ(p.config.ifname, "veth0");
  EXPECT_EQ(p.config.prefix_len, 16);
}

struct BadCase {
  std::map<std::string, std::string> env;
  std::string variable;
  std::string fragment;  // part of the one-line message
};

class ConfigErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigErrors, OneLineNamingTheVariableAndTheFix) {
  Parsed p = Parse(GetParam().env);
  ASSERT_TRUE(p.error);
  EXPECT_EQ(p.error->variable, GetParam().variable);
  std::string line = p.error->Line();
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.rfind("shake: " + GetParam().variable, 0), 0u) << line;
  EXPECT_NE(line.find(GetParam().fragment), std::string::npos) << line;
  EXPECT_NE(line.find("; "), std::string::npos) << "no fix in: " << line;
  EXPECT_NE(p.error->err, 0);
}

const std::string kTun = "tun:shk0";
INSTANTIATE_TEST_SUITE_P(
    All, ConfigErrors,
    ::testing::Values(
        BadCase{{{"SHAKE_ADDR", "198.18.0.2/24"}}, "SHAKE_DEVICE", "not set"},
        BadCase{{{"SHAKE_DEVICE", "eth0"}, {"SHAKE_ADDR", "198.18.0.2/24"}}, "SHAKE_DEVICE",
                "unknown device kind"},
        BadCase{{{"SHAKE_DEVICE", "tun:"}, {"SHAKE_ADDR", "198.18.0.2/24"}}, "SHAKE_DEVICE",
                "bad interface name"},
        BadCase{{{"SHAKE_DEVICE", "tun:abcdefghijklmnop"}}, "SHAKE_DEVICE", "bad interface name"},
        BadCase{{{"SHAKE_DEVICE", "tun:a/b"}}, "SHAKE_DEVICE", "bad interface name"},
        BadCase{{{"SHAKE_DEVICE", kTun}}, "SHAKE_ADDR", "not set"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2"}}, "SHAKE_ADDR",
                "198.18.0.2/24"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0/24"}}, "SHAKE_ADDR",
                "not an IPv4 address"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.256/24"}}, "SHAKE_ADDR",
                "not an IPv4 address"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2/33"}}, "SHAKE_ADDR",
                "bad prefix length"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2/x"}}, "SHAKE_ADDR",
                "bad prefix length"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.0/24"}}, "SHAKE_ADDR",
                "not usable as a host address"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "127.0.0.2/8"}}, "SHAKE_ADDR",
                "not usable as a host address"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2/24"},
                 {"SHAKE_GATEWAY", "198.19.0.1"}},
                "SHAKE_GATEWAY", "198.18.0.0/24"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2/24"},
                 {"SHAKE_GATEWAY", "198.18.0.2"}},
                "SHAKE_GATEWAY", "not another host"},
        BadCase{{{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2/24"},
                 {"SHAKE_GATEWAY", "gw"}},
                "SHAKE_GATEWAY", "not an IPv4 address"},
        BadCase{{{"SHAKE_LOG", "verbose"}}, "SHAKE_LOG", "error, warn, info, debug"},
        BadCase{{{"SHAKE_FALLBACK", "yes"}}, "SHAKE_FALLBACK", "SHAKE_FALLBACK=kernel"},
        BadCase{{{"SHAKE_MEM_MAX", "lots"}}, "SHAKE_MEM_MAX", "from 1M to 8G"},
        BadCase{{{"SHAKE_MEM_MAX", "512K"}}, "SHAKE_MEM_MAX", "from 1M to 8G"},
        BadCase{{{"SHAKE_MEM_MAX", "9G"}}, "SHAKE_MEM_MAX", "from 1M to 8G"},
        BadCase{{{"SHAKE_MEM_MAX", "16MB"}}, "SHAKE_MEM_MAX", "SHAKE_MEM_MAX=256M"}));

TEST(Config, MemMaxTakesBytesOrKMG) {
  EXPECT_EQ(Parse({}).config.mem_max, uint64_t{1} << 30) << "the default, 1 GiB";
  EXPECT_EQ(Parse({{"SHAKE_MEM_MAX", "16M"}}).config.mem_max, uint64_t{16} << 20);
  EXPECT_EQ(Parse({{"SHAKE_MEM_MAX", "8g"}}).config.mem_max, uint64_t{8} << 30);
  EXPECT_EQ(Parse({{"SHAKE_MEM_MAX", "2048k"}}).config.mem_max, uint64_t{2} << 20);
  EXPECT_EQ(Parse({{"SHAKE_MEM_MAX", "1048576"}}).config.mem_max, uint64_t{1} << 20);
  EXPECT_FALSE(Parse({{"SHAKE_MEM_MAX", "16M"}}).error);
}

TEST(Config, LauncherAliasNamesTheFlagAndTheVariable) {
  Parsed p = Parse({{"SHAKE_DEVICE", kTun}, {"SHAKE_ADDR", "198.18.0.2"}});
  ASSERT_TRUE(p.error);
  EXPECT_EQ(p.error->Line("--addr").rfind("shake: --addr (SHAKE_ADDR) 198.18.0.2: ", 0), 0u)
      << p.error->Line("--addr");
}

TEST(ConfigHost, MissingDeviceIsEnodevWithTheCommandToCreateIt) {
  Parsed p = Parse({{"SHAKE_DEVICE", "tun:shknone9"}, {"SHAKE_ADDR", "198.18.0.2/24"}});
  ASSERT_FALSE(p.error);
  auto err = CheckHost(p.config);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->err, ENODEV);
  EXPECT_NE(err->Line().find("ip tuntap add dev shknone9 mode tun"), std::string::npos);
}

TEST(ConfigHost, LoopbackIsNotATunDevice) {
  Parsed p = Parse({{"SHAKE_DEVICE", "tun:lo"}, {"SHAKE_ADDR", "198.18.0.2/24"}});
  auto err = CheckHost(p.config);
  ASSERT_TRUE(err);
  EXPECT_NE(err->Line().find("not a TUN device"), std::string::npos);
}

TEST(ConfigHost, PcapInAMissingDirectory) {
  Parsed p = Parse({{"SHAKE_PCAP", "/nonexistent-dir/x.pcap"}});
  auto err = CheckHost(p.config);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->variable, "SHAKE_PCAP");
}

TEST(ConfigHost, NotConfiguredNeedsNothing) {
  Parsed p = Parse({});
  EXPECT_FALSE(CheckHost(p.config));
}

}  // namespace
}  // namespace shake::shim
