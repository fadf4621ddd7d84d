// PcapWriter: a filter that records every frame passing it, both directions, in the classic
// pcap format (microsecond timestamps), readable by `tcpdump -r` and Wireshark.
//
// The link type follows the device: LINKTYPE_RAW (101, bare IPv4) for TUN, LINKTYPE_ETHERNET (1)
// for AF_PACKET. Timestamps are the monotonic Instants of the engine converted to wall-clock
// time once, when the file is opened.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/frame.h"
#include "stack/stack.h"

namespace shake::io {

inline constexpr uint32_t kLinktypeEthernet = 1;
inline constexpr uint32_t kLinktypeRaw = 101;

inline uint32_t LinktypeFor(LinkMode mode) {
  return mode == LinkMode::kEthernet ? kLinktypeEthernet : kLinktypeRaw;
}

class PcapWriter final : public FrameFilter {
 public:
  // Creates (truncates) `path`. Returns null and a reason on failure.
  static std::unique_ptr<PcapWriter> Open(const std::string& path, uint32_t linktype,
                                          std::string* error, uint32_t snaplen = 262144);
  // A file several processes write at once (libshake: every process of a stack, and its
  // keeper): opened for appending, each record put down with one write, unbuffered, so that
  // records never interleave. `create`: the first writer truncates it and writes the header.
  static std::unique_ptr<PcapWriter> OpenShared(const std::string& path, uint32_t linktype,
                                                bool create, std::string* error,
                                                uint32_t snaplen = 262144);
  ~PcapWriter() override;

  void Write(Instant when, std::span<const std::byte> frame);
  void Flush();
  uint64_t records() const { return records_; }

  void Process(Instant now, Direction dir, std::span<const std::byte> frame, FrameMeta meta,
               FrameEmitter& next) override;

 private:
  PcapWriter() = default;
  std::FILE* file_ = nullptr;
  int fd_ = -1;  // OpenShared
  uint32_t snaplen_ = 0;
  int64_t realtime_offset_ = 0;
  uint64_t records_ = 0;
};

// A parsed pcap file, for tests and tools.
struct PcapRecord {
  int64_t time_us = 0;
  uint32_t orig_len = 0;
  std::vector<std::byte> data;
};
struct PcapFile {
  uint32_t linktype = 0;
  uint32_t snaplen = 0;
  std::vector<PcapRecord> records;
};
// Reads a classic microsecond pcap file written in either byte order. False on a malformed file.
bool ReadPcap(const std::string& path, PcapFile* out, std::string* error);

}  // namespace shake::io
