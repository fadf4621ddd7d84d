#include "io/trace_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "io/clock.h"

namespace shake::io {
namespace {

using Rec = std::array<std::byte, kTraceRecordLen>;

void Put8(Rec& r, size_t off, uint8_t v) { r[off] = std::byte{v}; }
void Put16(Rec& r, size_t off, uint16_t v) {
  for (size_t i = 0; i < 2; ++i) r[off + i] = static_cast<std::byte>(v >> (8 * i));
}
void Put32(Rec& r, size_t off, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) r[off + i] = static_cast<std::byte>(v >> (8 * i));
}
void Put64(Rec& r, size_t off, uint64_t v) {
  for (size_t i = 0; i < 8; ++i) r[off + i] = static_cast<std::byte>(v >> (8 * i));
}
uint8_t Get8(const std::byte* p, size_t off) { return static_cast<uint8_t>(p[off]); }
uint16_t Get16(const std::byte* p, size_t off) {
  return static_cast<uint16_t>(Get8(p, off) | (Get8(p, off + 1) << 8));
}
uint32_t Get32(const std::byte* p, size_t off) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i) v |= uint32_t{Get8(p, off + i)} << (8 * i);
  return v;
}
uint64_t Get64(const std::byte* p, size_t off) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v |= uint64_t{Get8(p, off + i)} << (8 * i);
  return v;
}

void PutHeader(Rec& r, uint8_t type, uint32_t pid) {
  r.fill(std::byte{0});
  Put8(r, 0, type);
  Put16(r, 2, static_cast<uint16_t>(kTraceRecordLen));
  Put32(r, 4, pid);
}

bool HasMagic(const std::byte* p) { return std::memcmp(p + 8, kTraceLogMagic, 8) == 0; }

std::string ProcessName() {
  char buf[64] = {};
  const int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  std::string s(buf, n > 0 ? static_cast<size_t>(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

void EncodeHello(const TraceHello& h, Rec& out) {
  PutHeader(out, trace_record::kHello, h.pid);
  std::memcpy(out.data() + 8, kTraceLogMagic, 8);
  Put16(out, 16, kTraceLogVersion);
  Put8(out, 18, h.link == LinkMode::kEthernet ? 1 : 0);
  Put8(out, 19, h.prefix_len);
  Put32(out, 20, h.addr.value());
  Put64(out, 24, static_cast<uint64_t>(h.mono.nanos()));
  Put64(out, 32, static_cast<uint64_t>(h.real_ns));
  const size_t n = std::min<size_t>(h.comm.size(), 15);
  std::memcpy(out.data() + 40, h.comm.data(), n);
}

void EncodeEvent(const TraceRecord& r, Rec& out) {
  const TraceEvent& e = r.event;
  PutHeader(out, trace_record::kEvent, r.pid);
  Put64(out, 8, static_cast<uint64_t>(e.time.nanos()));
  Put8(out, 16, static_cast<uint8_t>(e.kind));
  Put8(out, 17, e.flags);
  Put8(out, 18, static_cast<uint8_t>(e.from));
  Put8(out, 19, static_cast<uint8_t>(e.to));
  Put32(out, 20, e.tuple.local.addr.value());
  Put32(out, 24, e.tuple.remote.addr.value());
  Put16(out, 28, e.tuple.local.port);
  Put16(out, 30, e.tuple.remote.port);
  Put32(out, 32, e.seq.raw());
  Put32(out, 36, e.ack.raw());
  Put32(out, 40, e.len);
  Put32(out, 44, e.window);
  Put8(out, 48, static_cast<uint8_t>(r.marks | (e.retransmit ? trace_mark::kRetransmit : 0)));
  Put8(out, 49, r.option_bits);
  Put16(out, 50, r.mss);
  Put8(out, 52, r.window_scale);
  Put8(out, 53, static_cast<uint8_t>(e.drop));
  Put32(out, 56, r.ts_val);
  Put32(out, 60, r.ts_ecr);
}

// ---- writer ---------------------------------------------------------------------------------

std::unique_ptr<TraceLogWriter> TraceLogWriter::Open(const std::string& path,
                                                     const StackConfig& stack,
                                                     std::string* error) {
  TraceHello h;
  h.pid = static_cast<uint32_t>(getpid());
  h.addr = stack.addr;
  h.prefix_len = static_cast<uint8_t>(stack.prefix_len);
  h.link = stack.link;
  h.real_ns = RealtimeOffsetNanos();
  h.mono = MonotonicNow();
  h.real_ns += h.mono.nanos();
  h.comm = ProcessName();
  return OpenWith(path, h, error);
}

std::unique_ptr<TraceLogWriter> TraceLogWriter::OpenWith(const std::string& path,
                                                         const TraceHello& hello,
                                                         std::string* error) {
  const int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = "trace log " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<TraceLogWriter> w(new TraceLogWriter());
  w->fd_ = fd;
  w->path_ = path;
  w->hello_ = hello;
  Rec r;
  EncodeHello(hello, r);
  if (!w->WriteAll(r.data(), r.size())) {
    *error = w->error_;
    return nullptr;
  }
  return w;
}

TraceLogWriter::~TraceLogWriter() {
  Flush();
  if (fd_ >= 0) close(fd_);
}

void TraceLogWriter::Put(const Rec& rec) {
  if (!error_.empty()) return;
  if (used_ + kTraceRecordLen > buf_.size()) Flush();
  std::memcpy(buf_.data() + used_, rec.data(), kTraceRecordLen);
  used_ += kTraceRecordLen;
}

void TraceLogWriter::Append(const TraceEvent& e) {
  TraceRecord r;
  r.event = e;
  if (e.kind == TraceEvent::Kind::kSegmentIn || e.kind == TraceEvent::Kind::kSegmentOut) {
    FillTraceExtras(e, r);
  }
  AppendRecord(r);
}

void TraceLogWriter::AppendRecord(const TraceRecord& r) {
  TraceRecord mine = r;
  mine.pid = hello_.pid;
  Rec rec;
  EncodeEvent(mine, rec);
  Put(rec);
}

void TraceLogWriter::Flush() {
  if (used_ == 0 || !error_.empty()) {
    used_ = 0;
    return;
  }
  const size_t n = used_;
  used_ = 0;
  if (WriteAll(buf_.data(), n)) written_ += n / kTraceRecordLen;
}

bool TraceLogWriter::WriteAll(const std::byte* p, size_t n) {
  // One write(2) for whole records: O_APPEND puts them at the end of the file in one piece, so
  // other processes' records never land inside them. A retry after a partial write could, so
  // there is none: the writer stops.
  for (;;) {
    const ssize_t w = write(fd_, p, n);
    if (w == static_cast<ssize_t>(n)) return true;
    if (w < 0 && errno == EINTR) continue;
    const int err = errno;
    error_ = "trace log " + path_ + ": " +
             (w < 0 ? std::string(std::strerror(err))
                    : "short write (" + std::to_string(w) + " of " + std::to_string(n) +
                          " bytes); no more events are written");
    return false;
  }
}

void TraceLogWriter::AfterFork(uint32_t pid) {
  used_ = 0;  // the parent's records: the parent writes them
  hello_.pid = pid != 0 ? pid : static_cast<uint32_t>(getpid());
  Rec r;
  EncodeHello(hello_, r);
  if (error_.empty()) WriteAll(r.data(), r.size());
}

// ---- reader ---------------------------------------------------------------------------------

const TraceHello* TraceLog::HelloFor(size_t event_index) const {
  if (event_index >= hello_of.size() || hello_of[event_index] < 0) return nullptr;
  return &hellos[static_cast<size_t>(hello_of[event_index])];
}

bool LooksLikeTraceLog(const std::byte* data, size_t size) {
  return size >= 16 && Get8(data, 0) == trace_record::kHello && HasMagic(data);
}

bool ParseTraceLog(const std::byte* data, size_t size, TraceLog* out, std::string* error) {
  *out = TraceLog{};
  if (!LooksLikeTraceLog(data, size)) {
    *error = "not a libshake trace log (no SHKTRACE header)";
    return false;
  }
  if (Get16(data, 16) > kTraceLogVersion) {
    *error = "trace log version " + std::to_string(Get16(data, 16)) +
             " is newer than this shake reads (" + std::to_string(kTraceLogVersion) +
             "); use the shake that wrote it";
    return false;
  }
  std::map<uint32_t, int> current;  // pid -> index of its latest Hello
  // A record is taken only when its header is whole and sane; for events from a pid never
  // introduced, only where the scan is not resynchronising.
  auto plausible = [&](size_t off, bool resync) {
    if (off + 8 > size) return false;
    const uint8_t type = Get8(data, off);
    const uint16_t len = Get16(data, off + 2);
    if (Get8(data, off + 1) != 0 || len < 8 || len % 8 != 0 || off + len > size) return false;
    if (type == trace_record::kHello) return len >= 64 && HasMagic(data + off);
    if (type == trace_record::kEvent) {
      if (len < 64 || Get8(data, off + 16) > 3 || Get16(data, off + 54) != 0) return false;
      return !resync || current.count(Get32(data, off + 4)) != 0;
    }
    return !resync;  // an unknown type is skipped by its length, but not trusted to resync on
  };
  size_t off = 0;
  bool warned_orphan = false;
  while (off < size) {
    if (!plausible(off, false)) {
      const size_t bad = off;
      size_t next = off + 1;
      while (next < size && !plausible(next, true)) ++next;
      if (next >= size) {
        out->warnings.push_back("trace log: " + std::to_string(size - bad) +
                                " bytes at offset " + std::to_string(bad) +
                                " are not a whole record (cut short?); ignored");
        break;
      }
      out->warnings.push_back("trace log: skipped " + std::to_string(next - bad) +
                              " damaged bytes at offset " + std::to_string(bad));
      off = next;
    }
    const std::byte* p = data + off;
    const uint8_t type = Get8(p, 0);
    const uint16_t len = Get16(p, 2);
    const uint32_t pid = Get32(p, 4);
    if (type == trace_record::kHello) {
      TraceHello h;
      h.pid = pid;
      h.link = Get8(p, 18) == 1 ? LinkMode::kEthernet : LinkMode::kIp;
      h.prefix_len = Get8(p, 19);
      h.addr = Ipv4Addr(Get32(p, 20));
      h.mono = Instant::FromNanos(static_cast<int64_t>(Get64(p, 24)));
      h.real_ns = static_cast<int64_t>(Get64(p, 32));
      const char* c = reinterpret_cast<const char*>(p + 40);
      h.comm.assign(c, strnlen(c, 16));
      current[pid] = static_cast<int>(out->hellos.size());
      out->hellos.push_back(std::move(h));
    } else if (type == trace_record::kEvent) {
      TraceRecord r;
      r.pid = pid;
      TraceEvent& e = r.event;
      e.time = Instant::FromNanos(static_cast<int64_t>(Get64(p, 8)));
      e.kind = static_cast<TraceEvent::Kind>(Get8(p, 16));
      e.flags = Get8(p, 17);
      const uint8_t from = Get8(p, 18), to = Get8(p, 19);
      e.from = static_cast<TcpState>(from < kTcpStateCount ? from : 0);
      e.to = static_cast<TcpState>(to < kTcpStateCount ? to : 0);
      e.tuple.local = Endpoint{Ipv4Addr(Get32(p, 20)), Get16(p, 28)};
      e.tuple.remote = Endpoint{Ipv4Addr(Get32(p, 24)), Get16(p, 30)};
      e.seq = SeqNum(Get32(p, 32));
      e.ack = SeqNum(Get32(p, 36));
      e.len = Get32(p, 40);
      e.window = Get32(p, 44);
      r.marks = Get8(p, 48);
      e.retransmit = (r.marks & trace_mark::kRetransmit) != 0;
      r.option_bits = Get8(p, 49);
      r.mss = Get16(p, 50);
      r.window_scale = Get8(p, 52);
      const uint8_t drop = Get8(p, 53);
      e.drop = drop < static_cast<uint8_t>(Drop::kCount) ? static_cast<Drop>(drop) : Drop::kNone;
      r.ts_val = Get32(p, 56);
      r.ts_ecr = Get32(p, 60);
      auto it = current.find(pid);
      if (it == current.end() && !warned_orphan) {
        out->warnings.push_back("trace log: events of pid " + std::to_string(pid) +
                                " come before any Hello of that pid");
        warned_orphan = true;
      }
      out->hello_of.push_back(it == current.end() ? -1 : it->second);
      out->events.push_back(r);
    }
    off += len;
  }
  return true;
}

bool ReadTraceLog(const std::string& path, TraceLog* out, std::string* error) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": " + std::strerror(errno);
    return false;
  }
  std::vector<std::byte> data;
  std::byte buf[1 << 16];
  for (;;) {
    const ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = path + ": " + std::strerror(errno);
      close(fd);
      return false;
    }
    if (n == 0) break;
    data.insert(data.end(), buf, buf + n);
  }
  close(fd);
  if (!ParseTraceLog(data.data(), data.size(), out, error)) {
    *error = path + ": " + *error;
    return false;
  }
  return true;
}

}  // namespace shake::io
