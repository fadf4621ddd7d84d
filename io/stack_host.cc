#include "io/stack_host.h"

#include <sys/random.h>

#include <cstdlib>

namespace shake::io {

bool ParseAddrPrefix(const std::string& text, Ipv4Addr* addr, int* prefix) {
  const auto slash = text.find('/');
  auto a = Ipv4Addr::Parse(text.substr(0, slash));
  if (!a) return false;
  *addr = *a;
  *prefix = 32;
  if (slash != std::string::npos) {
    char* end = nullptr;
    const long p = std::strtol(text.c_str() + slash + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 32 || end == text.c_str() + slash + 1) return false;
    *prefix = static_cast<int>(p);
  }
  return true;
}

std::unique_ptr<StackHost> StackHost::Create(const HostOptions& options, std::string* error) {
  std::unique_ptr<StackHost> h(new StackHost());
  StackConfig config;
  if (!ParseAddrPrefix(options.addr, &config.addr, &config.prefix_len)) {
    *error = "address \"" + options.addr + "\": expected A.B.C.D/PREFIX, e.g. 198.18.0.2/24";
    return nullptr;
  }
  if (!options.gateway.empty()) {
    auto g = Ipv4Addr::Parse(options.gateway);
    if (!g) {
      *error = "gateway \"" + options.gateway + "\": expected A.B.C.D";
      return nullptr;
    }
    config.gateway = *g;
  }
  h->device_ = OpenDevice(options.device, error);
  if (!h->device_) return nullptr;
  config.link = h->device_->link();
  config.mac = h->device_->mac();
  config.mtu = h->device_->mtu();
  config.tcp = options.tcp;
  if (getrandom(config.isn_secret.data(), config.isn_secret.size(), 0) !=
      static_cast<ssize_t>(config.isn_secret.size())) {
    *error = "getrandom failed";
    return nullptr;
  }
  config.seed = options.seed;
  if (config.seed == 0 && getrandom(&config.seed, sizeof config.seed, 0) < 0) config.seed = 1;

  h->stack_ = std::make_unique<Stack>(config, std::pmr::new_delete_resource());
  h->stack_->SetObserver(h.get());
  h->handler_ = std::make_unique<StackHandler>(*h->stack_);
  h->engine_ = std::make_unique<Engine>(*h->device_, *h->handler_, options.engine);
  // Device side first: faults model the network, the pcap records what the stack saw.
  if (options.faults) {
    h->faults_ = std::make_unique<FaultInjector>(*options.faults);
    h->engine_->AddFilter(h->faults_.get());
  }
  if (!options.pcap.empty()) {
    h->pcap_ = PcapWriter::Open(options.pcap, LinktypeFor(config.link), error, options.pcap_snaplen);
    if (!h->pcap_) return nullptr;
    h->engine_->AddFilter(h->pcap_.get());
  }
  return h;
}

StackHost::~StackHost() {
  Stop();
  if (stack_) stack_->SetObserver(nullptr);
}

void StackHost::Start() {
  if (thread_.joinable()) return;
  thread_ = std::jthread([this](std::stop_token st) { engine_->Run(st); });
}

void StackHost::Stop() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  if (pcap_) {
    std::lock_guard<std::mutex> lock(engine_->mutex());
    pcap_->Flush();
  }
}

uint32_t StackHost::WaitFor(SocketId s, uint32_t mask, Instant deadline) {
  uint32_t r = 0;
  WaitUntil(
      [&](Stack& st) {
        r = st.Readiness(s);
        return (r & mask) != 0;
      },
      deadline);
  return r;
}

void StackHost::OnReadiness(SocketId) { cv_.notify_all(); }

}  // namespace shake::io
