#include "shim/stat_snapshot.h"

#include <algorithm>
#include <cinttypes>
#include <cstdarg>
#include <map>
#include <cstdio>
#include <string>
#include <vector>

namespace shake::shim {
namespace {

struct Row {
  SocketInfo info;
  bool orphan = false;
  std::vector<int32_t> pids;
};

std::string Ip(uint32_t a) {
  char b[16];
  snprintf(b, sizeof b, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
  return b;
}

std::string Ep(const Endpoint& e) {
  if (e.port == 0 && e.addr.is_unspecified()) return "*:*";
  return Ip(e.addr.value()) + ":" + std::to_string(e.port);
}

std::string Comm(int32_t pid) {
  if (pid <= 0) return "";
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/comm", pid);
  FILE* f = fopen(path, "re");
  if (f == nullptr) return "?";
  char buf[64] = {};
  if (fgets(buf, sizeof buf, f) == nullptr) buf[0] = '\0';
  fclose(f);
  std::string s = buf;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

// JSON strings here are state names, addresses and process names: escape what a comm may hold.
std::string Quote(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

void Append(std::string& s, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
void Append(std::string& s, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) s.append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

}  // namespace

std::string StatSnapshot(Shared& sh, size_t arena_live, bool json) {
  Stack& st = *sh.stack;
  std::vector<Row> rows;
  st.VisitConnections([&](SocketId id, const SocketInfo& info) {
    Row r;
    r.info = info;
    r.orphan = id == kNoSocket;
    if (SocketRec* rec = sh.Rec(id)) {
      rec->refs.ForEach(sh.limits.procs, [&](int slot, uint16_t) {
        r.pids.push_back(sh.procs[slot].pid);
      });
    }
    rows.push_back(std::move(r));
  });
  const Counters c = st.counters();
  const auto states = st.ConnectionsByState();
  size_t connections = 0;
  for (size_t n : states) connections += n;
  const size_t memory = arena_live > sh.tables_bytes ? arena_live - sh.tables_bytes : 0;
  const MemoryUse mu = st.Memory();
  std::vector<std::pair<int, int32_t>> procs;
  for (uint32_t p = 0; p < sh.limits.procs; ++p) {
    if (sh.procs[p].pid != 0) procs.emplace_back(static_cast<int>(p), sh.procs[p].pid);
  }
  const std::string addr = Ip(sh.addr) + "/" + std::to_string(sh.prefix_len);
  std::map<int32_t, std::string> comms;  // read once per process
  for (const auto& [slot, pid] : procs) comms[pid] = Comm(pid);
  auto comm = [&](int32_t pid) {
    auto it = comms.find(pid);
    return it != comms.end() ? it->second : Comm(pid);
  };

  std::string o;
  if (json) {
    o += "{\"device\":" + Quote(sh.device) + ",\"addr\":" + Quote(addr) + ",\"gateway\":" +
         (sh.has_gateway ? Quote(Ip(sh.gateway)) : std::string("null"));
    Append(o, ",\"keeper_pid\":%d,\"memory_bytes\":%zu,\"arena_live_bytes\":%zu,"
              "\"tables_bytes\":%zu,\"connections\":%zu",
           sh.keeper_pid, memory, arena_live, sh.tables_bytes, connections);
    Append(o, ",\"buffer_bytes\":%zu,\"buffer_peak_bytes\":%zu,\"buffer_pressure_bytes\":%zu,"
              "\"buffer_limit_bytes\":%zu,\"memory_pressure\":%s",
           mu.allocated, mu.peak, mu.pressure, mu.limit, mu.under_pressure ? "true" : "false");
    o += ",\"states\":{";
    for (size_t i = 0; i < states.size(); ++i) {
      if (i) o += ',';
      o += Quote(std::string(StateName(static_cast<TcpState>(i)))) + ":" +
           std::to_string(states[i]);
    }
    o += "},\"processes\":[";
    for (size_t i = 0; i < procs.size(); ++i) {
      if (i) o += ',';
      Append(o, "{\"slot\":%d,\"pid\":%d,\"comm\":", procs[i].first, procs[i].second);
      o += Quote(comm(procs[i].second)) + "}";
    }
    o += "],\"counters\":{";
    c.ForEach([&](std::string_view name, uint64_t v) {
      Append(o, "\"%.*s\":%" PRIu64 ",", static_cast<int>(name.size()), name.data(), v);
    });
    o += "\"drops\":{";
    bool first = true;
    for (size_t i = 1; i < c.drops.size(); ++i) {
      if (!first) o += ',';
      first = false;
      o += Quote(std::string(DropName(static_cast<Drop>(i)))) + ":" + std::to_string(c.drops[i]);
    }
    o += "}},\"sockets\":[";
    for (size_t i = 0; i < rows.size(); ++i) {
      const SocketInfo& s = rows[i].info;
      if (i) o += ',';
      o += "{\"state\":" + Quote(std::string(StateName(s.state))) +
           ",\"local\":" + Quote(Ep(s.local)) + ",\"remote\":" + Quote(Ep(s.remote));
      Append(o, ",\"recv_q\":%zu,\"send_q\":%zu,\"rtt_us\":%" PRId64 ",\"rttvar_us\":%" PRId64
                ",\"rto_us\":%" PRId64 ",\"cwnd\":%u,\"ssthresh\":%u,\"mss\":%u,"
                "\"retransmits\":%" PRIu64 ",\"orphan\":%s,\"pids\":[",
             s.readable_bytes, s.unsent_bytes, s.srtt.nanos() / 1000, s.rttvar.nanos() / 1000,
             s.rto.nanos() / 1000, s.cwnd, s.ssthresh, s.mss, s.retransmits,
             rows[i].orphan ? "true" : "false");
      for (size_t k = 0; k < rows[i].pids.size(); ++k) {
        Append(o, k ? ",%d" : "%d", rows[i].pids[k]);
      }
      o += "]}";
    }
    o += "]}\n";
    return o;
  }
  Append(o, "stack %s %s%s%s, keeper %d, memory %zu bytes (%zu connections", sh.device,
         addr.c_str(), sh.has_gateway ? " via " : "",
         sh.has_gateway ? Ip(sh.gateway).c_str() : "", sh.keeper_pid, memory, connections);
  if (connections != 0) Append(o, ", %zu each", memory / connections);
  o += ")\n";
  Append(o, "buffers %zu bytes (peak %zu), pressure at %zu, limit %zu%s\n", mu.allocated, mu.peak,
         mu.pressure, mu.limit, mu.under_pressure ? ", UNDER PRESSURE" : "");
  o += "processes:";
  for (const auto& [slot, pid] : procs) Append(o, " %d(%s)", pid, comm(pid).c_str());
  o += procs.empty() ? " none\n" : "\n";
  Append(o, "%-12s %8s %8s %-21s %-21s %s\n", "State", "Recv-Q", "Send-Q", "Local", "Peer",
         "rtt/var ms, cwnd, retrans, process");
  for (const Row& r : rows) {
    const SocketInfo& s = r.info;
    Append(o, "%-12s %8zu %8zu %-21s %-21s", std::string(StateName(s.state)).c_str(),
           s.readable_bytes, s.unsent_bytes, Ep(s.local).c_str(), Ep(s.remote).c_str());
    if (!s.listening) {
      Append(o, " %.1f/%.1f cwnd:%u retrans:%" PRIu64, static_cast<double>(s.srtt.nanos()) / 1e6,
             static_cast<double>(s.rttvar.nanos()) / 1e6, s.mss ? s.cwnd / s.mss : 0,
             s.retransmits);
    }
    if (r.orphan) o += " (orphan)";
    for (int32_t pid : r.pids) Append(o, " %s[%d]", comm(pid).c_str(), pid);
    o += "\n";
  }
  o += "counters:";
  c.ForEach([&](std::string_view name, uint64_t v) {
    if (v != 0) Append(o, " %.*s=%" PRIu64, static_cast<int>(name.size()), name.data(), v);
  });
  o += "\ndrops:";
  bool any = false;
  for (size_t i = 1; i < c.drops.size(); ++i) {
    if (c.drops[i] == 0) continue;
    any = true;
    Append(o, " %s=%" PRIu64, std::string(DropName(static_cast<Drop>(i))).c_str(), c.drops[i]);
  }
  o += any ? "\n" : " none\n";
  return o;
}

}  // namespace shake::shim
