// The connection event log behind SHAKE_TRACE and `shake trace`: a small, versioned, append-only
// binary file of the stack's TraceEvents (stack/stack.h), plus what a ladder diagram needs that an
// event lacks (which host is the stack, which process wrote it, the clock it counts in).
//
// Writing (the runtime, one writer per process):
//   auto w = io::TraceLogWriter::Open(path, stack_config, &error);  // writes this process's Hello
//   stack.SetObserver(observer);   // observer->OnTrace(e) calls w->Append(e)
//   ... after each engine pass: w->Flush();                         // one write(2), whole records
//   in a fork child, before it drives the stack: w->AfterFork();    // drops the parent's buffer
// Reading (`shake trace`, tests):
//   io::TraceLog log;
//   if (!io::ReadTraceLog(path, &log, &error)) ...;   // log.hellos, log.events, log.warnings
//
// ## File format, version 1
// A file is a sequence of records. All integers are little-endian; times are nanoseconds.
// Every record starts with the same 8-byte header:
//     offset 0  u8   type           1 = Hello, 2 = Event; readers skip other types by length
//     offset 1  u8   reserved (0)
//     offset 2  u16  length         of the whole record in bytes, a multiple of 8, at least 8
//     offset 4  u32  pid            of the process that wrote it
// Hello (type 1, 64 bytes): each writer's first record, so a file always starts with one (and
// with the magic at offset 8). Several processes appending to one file each write their own.
//     8  char[8] magic "SHKTRACE"
//    16  u16  version (1)           bumped only for incompatible changes; readers refuse newer
//    18  u8   link mode             0 = bare IPv4 (TUN), 1 = Ethernet (AF_PACKET)
//    19  u8   prefix length of the stack's address
//    20  u32  the stack's IPv4 address (host order value, as Ipv4Addr::value())
//    24  i64  mono_ns               the stack's clock (the Instant the events carry) ...
//    32  i64  real_ns               ... and CLOCK_REALTIME at the same moment: wall time of an
//                                   event = real_ns + (event time - mono_ns)
//    40  char[16] comm              the program's name, NUL-padded
//    56  u64  reserved (0)
// Event (type 2, 64 bytes): one TraceEvent. "local" is the stack's end of the connection.
//     8  i64  time_ns               TraceEvent::time
//    16  u8   kind                  0 segment in, 1 segment out, 2 state change, 3 drop
//    17  u8   tcp flags             segments: FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 ...
//    18  u8   from state            state changes: TcpState numbering (RFC 9293 order, 0 CLOSED)
//    19  u8   to state
//    20  u32  local address
//    24  u32  remote address
//    28  u16  local port
//    30  u16  remote port
//    32  u32  seq
//    36  u32  ack
//    40  u32  len                   payload bytes
//    44  u32  window                the header's window field as sent (not scaled)
//    48  u8   marks                 bit 0: retransmission, bit 1: challenge ACK (RFC 5961),
//                                   bit 2: the option fields below are recorded (else unknown)
//    49  u8   option bits           bit 0: MSS, 1: window scale, 2: SACK-permitted, 3: timestamps
//    50  u16  MSS
//    52  u8   window scale shift
//    53  u8   drop reason           kDrop: Drop numbering (stack/counters.h)
//    54  u16  reserved (0)
//    56  u32  TSval
//    60  u32  TSecr
// Compatible growth: new record types, and fields appended to a record (a longer length); readers
// take the fields they know. Option bits and marks are zero while TraceEvent does not carry them.
//
// ## Several writers, one file
// The file is opened O_WRONLY|O_APPEND|O_CREAT and a writer only ever hands whole records to one
// write(2) (at most kBufferRecords of them), so records from several processes interleave but
// never mix. A writer that gets a short write (a full disk, or a fatal signal in the middle of
// write(2)) stops writing and says so in error(). A reader that meets a damaged or cut record
// says so in a warning, skips to the next record that is whole and plausible (a known pid, a
// known type, length and reserved fields as above) and keeps everything else.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stack/stack.h"

namespace shake::io {

inline constexpr uint16_t kTraceLogVersion = 1;
inline constexpr char kTraceLogMagic[8] = {'S', 'H', 'K', 'T', 'R', 'A', 'C', 'E'};
inline constexpr size_t kTraceRecordLen = 64;

namespace trace_record {
inline constexpr uint8_t kHello = 1;
inline constexpr uint8_t kEvent = 2;
}  // namespace trace_record

namespace trace_mark {
inline constexpr uint8_t kRetransmit = 1u << 0;
inline constexpr uint8_t kChallengeAck = 1u << 1;
inline constexpr uint8_t kOptionsRecorded = 1u << 2;
}  // namespace trace_mark

namespace trace_option {
inline constexpr uint8_t kMss = 1u << 0;
inline constexpr uint8_t kWindowScale = 1u << 1;
inline constexpr uint8_t kSackPermitted = 1u << 2;
inline constexpr uint8_t kTimestamps = 1u << 3;
}  // namespace trace_option

// Who wrote the events that follow it: one per process (and per AfterFork).
struct TraceHello {
  uint32_t pid = 0;
  Ipv4Addr addr;           // the stack's address: the "local" end of every event
  uint8_t prefix_len = 0;
  LinkMode link = LinkMode::kIp;
  Instant mono;            // the events' clock ...
  int64_t real_ns = 0;     // ... and the wall clock at the same moment
  std::string comm;        // program name, at most 15 characters kept
};

// One event as stored: a TraceEvent plus the writer's pid and the fields the format has room for
// that TraceEvent does not carry yet (options, marks beyond retransmit).
struct TraceRecord {
  uint32_t pid = 0;
  TraceEvent event;
  uint8_t marks = 0;         // trace_mark bits
  uint8_t option_bits = 0;   // trace_option bits
  uint16_t mss = 0;
  uint8_t window_scale = 0;
  uint32_t ts_val = 0;
  uint32_t ts_ecr = 0;
};

// The fields the format has room for and TraceEvent may not carry yet: a segment's options as
// `wire::TcpOptions options`, and `bool challenge_ack` on an ACK sent as an RFC 5961 challenge.
// They are recorded as soon as the event type has them under these names (a compile-time check,
// so adding the fields to TraceEvent is all it takes).
template <typename Event>
void FillTraceExtras(const Event& e, TraceRecord& r) {
  if constexpr (requires { e.options.mss; e.options.window_scale; e.options.timestamp; }) {
    r.marks |= trace_mark::kOptionsRecorded;
    if (e.options.mss) {
      r.option_bits |= trace_option::kMss;
      r.mss = *e.options.mss;
    }
    if (e.options.window_scale) {
      r.option_bits |= trace_option::kWindowScale;
      r.window_scale = *e.options.window_scale;
    }
    if (e.options.sack_permitted) r.option_bits |= trace_option::kSackPermitted;
    if (e.options.timestamp) {
      r.option_bits |= trace_option::kTimestamps;
      r.ts_val = e.options.timestamp->val;
      r.ts_ecr = e.options.timestamp->ecr;
    }
  }
  if constexpr (requires { e.challenge_ack; }) {
    if (e.challenge_ack) r.marks |= trace_mark::kChallengeAck;
  }
}

// Encodes one record into exactly kTraceRecordLen bytes (exposed for tests).
void EncodeHello(const TraceHello& h, std::array<std::byte, kTraceRecordLen>& out);
void EncodeEvent(const TraceRecord& r, std::array<std::byte, kTraceRecordLen>& out);

class TraceLogWriter {
 public:
  static constexpr size_t kBufferRecords = 64;  // 4 KiB: one write(2) when full or on Flush

  // Opens (creating it if needed) `path` for appending and writes this process's Hello: pid from
  // getpid(), the address from `stack`, the clocks read now (io/clock.h: CLOCK_MONOTONIC, the
  // engine's Instant), comm from /proc/self/comm. Null and a reason in `error` on failure.
  static std::unique_ptr<TraceLogWriter> Open(const std::string& path, const StackConfig& stack,
                                              std::string* error);
  // The same with every Hello field given (tests and simulations in virtual time).
  static std::unique_ptr<TraceLogWriter> OpenWith(const std::string& path,
                                                  const TraceHello& hello, std::string* error);
  ~TraceLogWriter();  // flushes
  TraceLogWriter(const TraceLogWriter&) = delete;
  TraceLogWriter& operator=(const TraceLogWriter&) = delete;

  // Buffers one event (StackObserver::OnTrace); writes the buffer when it is full. Not
  // thread-safe: call it where the stack is driven (under the runtime's lock). Records a
  // segment's options and the challenge-ACK mark too once TraceEvent carries them as
  // `wire::TcpOptions options` and `bool challenge_ack` (FillTraceExtras).
  void Append(const TraceEvent& e);
  // The same with the fields TraceEvent lacks given by the caller (tests; see TraceRecord).
  void AppendRecord(const TraceRecord& r);
  // Writes what is buffered in one write(2). Call after each engine pass and before exit.
  void Flush();
  // In a child after fork(): forgets the records it inherited unflushed (the parent writes
  // them), takes the child's pid and writes a Hello for it. `pid` 0 means getpid().
  void AfterFork(uint32_t pid = 0);

  uint64_t records_written() const { return written_; }
  // Empty while all is well; the reason once a write failed (the writer then stays silent).
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }

 private:
  TraceLogWriter() = default;
  void Put(const std::array<std::byte, kTraceRecordLen>& rec);
  bool WriteAll(const std::byte* p, size_t n);

  int fd_ = -1;
  TraceHello hello_;
  std::array<std::byte, kTraceRecordLen * kBufferRecords> buf_{};
  size_t used_ = 0;
  uint64_t written_ = 0;
  std::string path_;
  std::string error_;
};

// A whole log, read back.
struct TraceLog {
  std::vector<TraceHello> hellos;   // in file order
  std::vector<TraceRecord> events;  // in file order (each writer's own events are in time order)
  std::vector<std::string> warnings;  // e.g. a truncated last record, events before any Hello
  // The Hello that covers record `event_index`: the last Hello of its pid before it, or null.
  const TraceHello* HelloFor(size_t event_index) const;
  std::vector<int> hello_of;  // per event: index into hellos, or -1
};

// Reads a log written by TraceLogWriter. False with a reason when the file cannot be read or is
// not a trace log (no Hello magic at the start, or a newer version); damage after a good start
// is skipped with a warning (see "Several writers, one file").
bool ReadTraceLog(const std::string& path, TraceLog* out, std::string* error);
// The same over bytes in memory.
bool ParseTraceLog(const std::byte* data, size_t size, TraceLog* out, std::string* error);

// True when the file's first bytes are a trace log's (for tools that accept either a pcap or a
// log).
bool LooksLikeTraceLog(const std::byte* data, size_t size);

}  // namespace shake::io
