// Frames as they move between a device and the stack, and the filters ("device decorators")
// that can sit on that path: a pcap writer, a fault injector.
//
// A filter sees every frame in both directions and passes it on by calling the emitter zero or
// more times, now or later from Poll(). Filters are owned by the caller and listed from the device
// towards the stack: received frames pass filter 0 first, transmitted frames pass it last.
#pragma once

#include <cstddef>
#include <span>

#include "stack/base/time.h"

namespace shake::io {

enum class Direction : unsigned char {
  kIn,   // device -> stack
  kOut,  // stack -> device
};

// What the device reports about one received frame.
struct FrameMeta {
  // The device vouches for the transport checksum: the kernel either validated it or left it
  // partial for offload (CHECKSUM_PARTIAL on a veth). Passed to Stack::Receive.
  bool checksum_trusted = false;
};

class FrameEmitter {
 public:
  virtual ~FrameEmitter() = default;
  virtual void Emit(std::span<const std::byte> frame, FrameMeta meta) = 0;
};

class FrameFilter {
 public:
  virtual ~FrameFilter() = default;
  // One frame travelling in `dir`; pass it on through `next` (or not).
  virtual void Process(Instant now, Direction dir, std::span<const std::byte> frame,
                       FrameMeta meta, FrameEmitter& next) = 0;
  // Releases held frames that are due; returns when it next needs a Poll.
  virtual Instant Poll(Instant /*now*/, FrameEmitter& /*in_next*/, FrameEmitter& /*out_next*/) {
    return Instant::Never();
  }
};

}  // namespace shake::io
