#include "io/pcap.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "io/clock.h"

namespace shake::io {
namespace {

constexpr uint32_t kMagic = 0xa1b2c3d4;  // microsecond timestamps, writer's byte order

void PutLe32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
void PutLe16(unsigned char* p, uint16_t v) {
  p[0] = static_cast<unsigned char>(v);
  p[1] = static_cast<unsigned char>(v >> 8);
}

}  // namespace

std::unique_ptr<PcapWriter> PcapWriter::Open(const std::string& path, uint32_t linktype,
                                             std::string* error, uint32_t snaplen) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  w->file_ = std::fopen(path.c_str(), "wb");
  if (!w->file_) {
    *error = "pcap " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  std::setvbuf(w->file_, nullptr, _IOFBF, 1 << 20);
  w->snaplen_ = snaplen;
  w->realtime_offset_ = RealtimeOffsetNanos();
  // The file is written little-endian explicitly; readers detect the order from the magic.
  unsigned char h[24];
  PutLe32(h, kMagic);
  PutLe16(h + 4, 2);   // version 2.4
  PutLe16(h + 6, 4);
  PutLe32(h + 8, 0);   // thiszone
  PutLe32(h + 12, 0);  // sigfigs
  PutLe32(h + 16, snaplen);
  PutLe32(h + 20, linktype);
  if (std::fwrite(h, 1, sizeof h, w->file_) != sizeof h) {
    *error = "pcap " + path + ": write failed";
    return nullptr;
  }
  return w;
}

std::unique_ptr<PcapWriter> PcapWriter::OpenShared(const std::string& path, uint32_t linktype,
                                                   bool create, std::string* error,
                                                   uint32_t snaplen) {
  std::unique_ptr<PcapWriter> w(new PcapWriter());
  const int flags = O_WRONLY | O_APPEND | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0);
  w->fd_ = open(path.c_str(), flags, 0644);
  if (w->fd_ < 0) {
    *error = "pcap " + path + ": " + std::strerror(errno);
    return nullptr;
  }
  w->snaplen_ = snaplen;
  w->realtime_offset_ = RealtimeOffsetNanos();
  if (create) {
    unsigned char h[24];
    PutLe32(h, kMagic);
    PutLe16(h + 4, 2);
    PutLe16(h + 6, 4);
    PutLe32(h + 8, 0);
    PutLe32(h + 12, 0);
    PutLe32(h + 16, snaplen);
    PutLe32(h + 20, linktype);
    if (write(w->fd_, h, sizeof h) != static_cast<ssize_t>(sizeof h)) {
      *error = "pcap " + path + ": write failed";
      return nullptr;
    }
  }
  return w;
}

PcapWriter::~PcapWriter() {
  if (file_) std::fclose(file_);
  if (fd_ >= 0) close(fd_);
}

void PcapWriter::Write(Instant when, std::span<const std::byte> frame) {
  const int64_t t = when.nanos() + realtime_offset_;
  const uint32_t caplen = static_cast<uint32_t>(std::min<size_t>(frame.size(), snaplen_));
  unsigned char h[16];
  PutLe32(h, static_cast<uint32_t>(t / 1000000000));
  PutLe32(h + 4, static_cast<uint32_t>((t % 1000000000) / 1000));
  PutLe32(h + 8, caplen);
  PutLe32(h + 12, static_cast<uint32_t>(frame.size()));
  ++records_;
  if (fd_ >= 0) {
    iovec v[2] = {{h, sizeof h}, {const_cast<std::byte*>(frame.data()), caplen}};
    (void)!writev(fd_, v, 2);  // one record, one write: appends never interleave
    return;
  }
  std::fwrite(h, 1, sizeof h, file_);
  std::fwrite(frame.data(), 1, caplen, file_);
}

void PcapWriter::Flush() {
  if (file_) std::fflush(file_);
}

void PcapWriter::Process(Instant now, Direction, std::span<const std::byte> frame,
                         FrameMeta meta, FrameEmitter& next) {
  Write(now, frame);
  next.Emit(frame, meta);
}

bool ReadPcap(const std::string& path, PcapFile* out, std::string* error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *error = path + ": " + std::strerror(errno);
    return false;
  }
  struct Closer {
    std::FILE* f;
    ~Closer() { std::fclose(f); }
  } closer{f};
  unsigned char h[24];
  if (std::fread(h, 1, sizeof h, f) != sizeof h) {
    *error = "short global header";
    return false;
  }
  auto le32 = [](const unsigned char* p) {
    return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
  };
  auto be32 = [](const unsigned char* p) {
    return uint32_t{p[3]} | uint32_t{p[2]} << 8 | uint32_t{p[1]} << 16 | uint32_t{p[0]} << 24;
  };
  bool little;
  if (le32(h) == kMagic) {
    little = true;
  } else if (be32(h) == kMagic) {
    little = false;
  } else {
    *error = "not a microsecond pcap file";
    return false;
  }
  auto get = [&](const unsigned char* p) { return little ? le32(p) : be32(p); };
  out->snaplen = get(h + 16);
  out->linktype = get(h + 20);
  out->records.clear();
  unsigned char r[16];
  // Bounded by the file's size: each iteration consumes at least 16 bytes.
  while (std::fread(r, 1, sizeof r, f) == sizeof r) {
    PcapRecord rec;
    rec.time_us = int64_t{get(r)} * 1000000 + get(r + 4);
    const uint32_t caplen = get(r + 8);
    rec.orig_len = get(r + 12);
    if (caplen > out->snaplen || caplen > (1u << 24)) {
      *error = "record longer than snaplen";
      return false;
    }
    rec.data.resize(caplen);
    if (std::fread(rec.data.data(), 1, caplen, f) != caplen) {
      *error = "truncated record";
      return false;
    }
    out->records.push_back(std::move(rec));
  }
  return true;
}

}  // namespace shake::io
