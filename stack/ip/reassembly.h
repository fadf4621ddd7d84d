// IPv4 fragment reassembly (RFC 791, with RFC 5722's rule of thumb: overlaps are hostile).
//
// Datagrams are reassembled within a byte budget and a timeout. An overlapping fragment, a
// fragment that ends past 65535, or a datagram that would exceed the budget discards the whole
// datagram and counts why. Memory comes from the host's allocator.
#pragma once

#include <cstdint>
#include <memory_resource>
#include <optional>

#include "stack/base/time.h"
#include "stack/counters.h"
#include "stack/wire/bytes.h"
#include "stack/wire/ipv4.h"

namespace shake {

struct ReassemblyLimits {
  size_t max_bytes = 1 << 20;              // all datagrams in progress together
  size_t max_datagrams = 64;               // in progress at once
  Duration timeout = Duration::Seconds(30);  // Linux's ipfrag_time
  size_t min_fragment_payload = 8;         // non-final fragments smaller than this are dropped
};

class Reassembler {
 public:
  Reassembler(std::pmr::memory_resource* mem, ReassemblyLimits limits, Counters* counters);
  ~Reassembler();
  Reassembler(const Reassembler&) = delete;
  Reassembler& operator=(const Reassembler&) = delete;

  struct Datagram {
    wire::Ipv4Header header;  // of the first fragment, with frag fields cleared and total_len set
    wire::Bytes payload;      // valid until the next call on this Reassembler
  };

  // Takes one fragment (header.is_fragment() is true). Returns the whole datagram when this
  // fragment completes it. Drops are counted in `counters`.
  std::optional<Datagram> Add(Instant now, const wire::Ipv4Header& header, wire::Bytes payload);

  // Discards datagrams whose timeout has passed, counting Drop::kFragmentTimeout.
  void Expire(Instant now);
  Instant NextDeadline() const;
  size_t bytes_in_use() const;

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace shake
