// IPv4 fragment reassembly.
//
// Each datagram in progress holds its fragments as separate, non-overlapping byte runs sorted by
// offset, so memory accounting is exact (an attacker's lone fragment at offset 65000 costs its
// own length, not 65000 bytes). On completion the runs are copied into one buffer owned by the
// Reassembler, which the caller reads until its next Add or Expire.
//
// Decisions, with where they come from:
// - Any overlap discards the whole datagram (RFC 5722 section 4 asks this for IPv6; Linux does
//   the same for IPv4 since 4.19). An exact duplicate (same offset, length and bytes) is a
//   harmless retransmission by the network and is ignored.
// - A datagram that would end past 65535 - 20 bytes of payload is discarded (RFC 791: the total
//   length is 16 bits; Linux's ip_frag_queue "end + ihl > IP_MAX_MTU" check).
// - Non-final fragments must carry a multiple of 8 bytes (RFC 791: offsets count 8-byte units)
//   and at least `min_fragment_payload` bytes (tiny fragments are an evasion technique,
//   RFC 1858).
// - A final fragment that disagrees with an earlier one about the length, or data beyond the
//   final length, discards the datagram (Linux: "corrupt" in ip_frag_queue).
// - Over the byte budget, the fragment's datagram is discarded; over the datagram count, the
//   new datagram is refused. Both count Drop::kFragmentTooMany.
#include "stack/ip/reassembly.h"

#include <algorithm>
#include <cstring>
#include <memory_resource>
#include <vector>

namespace shake {
namespace {

// The largest payload an IPv4 datagram with a 20-byte header can carry.
constexpr uint32_t kMaxPayload = 65535 - 20;

struct Fragment {
  uint32_t offset;
  uint32_t end;
  std::pmr::vector<std::byte> data;
};

struct InProgress {
  InProgress(std::pmr::memory_resource* mem, const wire::Ipv4Header& h, Instant deadline_at)
      : src(h.src),
        dst(h.dst),
        protocol(h.protocol),
        ident(h.ident),
        deadline(deadline_at),
        fragments(mem) {}

  bool Matches(const wire::Ipv4Header& h) const {
    return h.src == src && h.dst == dst && h.protocol == protocol && h.ident == ident;
  }

  Ipv4Addr src;
  Ipv4Addr dst;
  uint8_t protocol;
  uint16_t ident;
  Instant deadline;
  std::optional<wire::Ipv4Header> first;  // header of the offset-0 fragment, once seen
  std::optional<uint32_t> final_end;      // payload length, once the last fragment is seen
  uint32_t held = 0;                      // payload bytes held, over all fragments
  std::pmr::vector<Fragment> fragments;   // sorted by offset, never overlapping
};

bool SameBytes(wire::Bytes a, const std::pmr::vector<std::byte>& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

struct Reassembler::Impl {
  Impl(std::pmr::memory_resource* m, ReassemblyLimits l, Counters* c)
      : mem(m), limits(l), counters(c), datagrams(m), completed(m) {}

  std::pmr::memory_resource* mem;
  ReassemblyLimits limits;
  Counters* counters;
  std::pmr::vector<InProgress> datagrams;
  size_t bytes = 0;                       // payload bytes held across all datagrams
  std::pmr::vector<std::byte> completed;  // the last reassembled payload

  void Discard(size_t index, Drop why) {
    bytes -= datagrams[index].held;
    datagrams.erase(datagrams.begin() + static_cast<std::ptrdiff_t>(index));
    counters->CountDrop(why);
  }

  void ExpireBefore(Instant now) {
    for (size_t i = 0; i < datagrams.size();) {
      if (datagrams[i].deadline <= now) {
        Discard(i, Drop::kFragmentTimeout);
      } else {
        ++i;
      }
    }
  }

  std::optional<Datagram> Add(Instant now, const wire::Ipv4Header& h, wire::Bytes payload);
};

std::optional<Reassembler::Datagram> Reassembler::Impl::Add(Instant now, const wire::Ipv4Header& h,
                                                            wire::Bytes payload) {
  const uint32_t offset = h.frag_offset;
  const size_t unchecked_end = size_t{offset} + payload.size();
  const bool last = !h.more_fragments;

  auto it = std::find_if(datagrams.begin(), datagrams.end(),
                         [&](const InProgress& d) { return d.Matches(h); });
  const bool known = it != datagrams.end();
  const size_t index = static_cast<size_t>(it - datagrams.begin());

  if (unchecked_end > kMaxPayload) {
    if (known) {
      Discard(index, Drop::kFragmentBad);
    } else {
      counters->CountDrop(Drop::kFragmentBad);
    }
    return std::nullopt;
  }
  const uint32_t end = static_cast<uint32_t>(unchecked_end);
  if (!last && (payload.size() % 8 != 0 || payload.size() < limits.min_fragment_payload ||
                payload.empty())) {
    counters->CountDrop(Drop::kFragmentBad);
    return std::nullopt;
  }

  if (!known) {
    if (datagrams.size() >= limits.max_datagrams) {
      counters->CountDrop(Drop::kFragmentTooMany);
      return std::nullopt;
    }
    datagrams.emplace_back(mem, h, now + limits.timeout);
  }
  InProgress& d = datagrams[index];

  // The length of the datagram is fixed by its last fragment.
  if (last) {
    const bool disagrees = d.final_end && *d.final_end != end;
    const bool data_beyond = !d.fragments.empty() && d.fragments.back().end > end;
    if (disagrees || data_beyond) {
      Discard(index, Drop::kFragmentBad);
      return std::nullopt;
    }
    d.final_end = end;
  } else if (d.final_end && end > *d.final_end) {
    Discard(index, Drop::kFragmentBad);
    return std::nullopt;
  }

  // Where the fragment goes: the first held fragment that ends after its offset.
  auto pos = std::find_if(d.fragments.begin(), d.fragments.end(),
                          [&](const Fragment& f) { return f.end > offset; });
  if (pos != d.fragments.end() && pos->offset < end) {
    if (pos->offset == offset && pos->end == end && SameBytes(payload, pos->data)) {
      return std::nullopt;  // an exact duplicate: already held
    }
    Discard(index, Drop::kFragmentOverlap);
    return std::nullopt;
  }

  if (!payload.empty()) {
    if (bytes + payload.size() > limits.max_bytes) {
      Discard(index, Drop::kFragmentTooMany);
      return std::nullopt;
    }
    Fragment f{offset, end, std::pmr::vector<std::byte>(payload.begin(), payload.end(), mem)};
    d.fragments.insert(pos, std::move(f));
    d.held += static_cast<uint32_t>(payload.size());
    bytes += payload.size();
  }
  if (offset == 0) d.first = h;

  // Fragments never overlap and all lie below final_end, so holding final_end bytes means the
  // datagram is whole.
  if (!d.first || !d.final_end || d.held != *d.final_end) return std::nullopt;

  completed.resize(*d.final_end);
  for (const Fragment& f : d.fragments) {
    std::copy(f.data.begin(), f.data.end(), completed.begin() + f.offset);
  }
  Datagram out;
  out.header = *d.first;
  out.header.header_len = wire::kIpv4MinHeaderLen;
  out.header.more_fragments = false;
  out.header.frag_offset = 0;
  out.header.total_len = static_cast<uint16_t>(wire::kIpv4MinHeaderLen + completed.size());
  out.payload = wire::Bytes(completed.data(), completed.size());
  bytes -= d.held;
  datagrams.erase(datagrams.begin() + static_cast<std::ptrdiff_t>(index));
  ++counters->ip_reassembled;
  return out;
}

Reassembler::Reassembler(std::pmr::memory_resource* mem, ReassemblyLimits limits,
                         Counters* counters)
    : impl_(std::pmr::polymorphic_allocator<Impl>(mem).new_object<Impl>(mem, limits, counters)) {}

Reassembler::~Reassembler() {
  std::pmr::polymorphic_allocator<Impl>(impl_->mem).delete_object(impl_);
}

std::optional<Reassembler::Datagram> Reassembler::Add(Instant now, const wire::Ipv4Header& header,
                                                      wire::Bytes payload) {
  impl_->completed.clear();
  impl_->ExpireBefore(now);
  return impl_->Add(now, header, payload);
}

void Reassembler::Expire(Instant now) {
  impl_->completed.clear();
  impl_->ExpireBefore(now);
}

Instant Reassembler::NextDeadline() const {
  Instant next = Instant::Never();
  for (const InProgress& d : impl_->datagrams) next = Min(next, d.deadline);
  return next;
}

size_t Reassembler::bytes_in_use() const { return impl_->bytes; }

}  // namespace shake
