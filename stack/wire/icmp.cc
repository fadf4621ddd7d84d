// ICMPv4 messages (RFC 792): type, code, checksum, four bytes of "rest", then the body.
#include "stack/wire/icmp.h"

#include <cstring>

#include "stack/wire/checksum.h"

namespace shake::wire {
namespace {

constexpr size_t kTypeOff = 0;
constexpr size_t kCodeOff = 1;
constexpr size_t kChecksumOff = 2;
constexpr size_t kRestOff = 4;

}  // namespace

Drop ParseIcmp(Bytes data, IcmpMessage* out, bool verify_checksum) {
  if (data.size() < kIcmpHeaderLen) return Drop::kBadIcmp;
  // The checksum covers the whole message, header and body (RFC 792).
  if (verify_checksum && InternetChecksum(data) != 0) return Drop::kBadIcmpChecksum;
  out->type = Load8(data, kTypeOff);
  out->code = Load8(data, kCodeOff);
  out->rest = Load32(data, kRestOff);
  out->payload = data.subspan(kIcmpHeaderLen);
  return Drop::kNone;
}

size_t EmitIcmp(MutBytes out, const IcmpMessage& m) {
  const size_t len = kIcmpHeaderLen + m.payload.size();
  // memmove: an echo reply may be built in the request's own buffer, so the body can alias `out`.
  // It is copied before the header is written, in case it starts inside the header.
  if (!m.payload.empty()) {
    std::memmove(out.data() + kIcmpHeaderLen, m.payload.data(), m.payload.size());
  }
  Store8(out, kTypeOff, m.type);
  Store8(out, kCodeOff, m.code);
  Store16(out, kChecksumOff, 0);
  Store32(out, kRestOff, m.rest);
  Store16(out, kChecksumOff, InternetChecksum(out.first(len)));
  return len;
}

}  // namespace shake::wire
