// TxRecords: one record per data segment in flight, for RACK-TLP loss detection (RFC 8985) and
// for the pipe estimate of SACK-based recovery (RFC 6675 section 4, "pipe").
//
// Each record holds a segment's sequence range, the time it was last (re)transmitted and whether
// it has been SACKed, marked lost or retransmitted. Records live in sequence order in a ring whose
// memory comes from the Tcb's pmr resource (no global allocation) and is released whenever the
// whole flight is acknowledged, so idle connections hold none; a record is addressed by a 32-bit
// id that only grows (slot = id & mask), so ids stay valid while the ring grows.
//
// Records that are still "in flight" in RACK's sense (neither SACKed nor marked lost) are also
// threaded on a doubly-linked list in transmit-time order, as Linux's tsorted_sent_queue, so the
// RACK scan (RFC 8985 6.2 step 5) starts at the oldest transmission and stops at the first one
// that is not yet overdue instead of walking the whole window on every ACK.
//
// Byte counters follow Linux's sacked_out / lost_out / retrans_out, so that
//   pipe = FlightSize - sacked - lost + retrans
// (Linux tcp_packets_in_flight; RFC 6675's pipe computed incrementally).
#pragma once

#include <cstdint>
#include <memory_resource>
#include <vector>

#include "stack/base/seqnum.h"
#include "stack/base/time.h"

namespace shake {

class TxRecords {
 public:
  static constexpr uint32_t kNil = 0xffffffffu;
  static constexpr uint8_t kSacked = 1;       // covered by a SACK block
  static constexpr uint8_t kLost = 2;         // marked lost (RACK, dupthresh or RTO)
  static constexpr uint8_t kRetrans = 4;      // a retransmission of it is in flight
  static constexpr uint8_t kEverRetrans = 8;  // retransmitted at least once (Karn, RFC 8985 6.2)

  struct Record {
    SeqNum start;
    SeqNum end;
    Instant xmit;
    uint32_t prev = kNil;  // transmit-time list; kNil at either end or when not on it
    uint32_t next = kNil;
    uint8_t flags = 0;
    bool on_list = false;
    uint32_t len() const { return static_cast<uint32_t>(end - start); }
  };

  explicit TxRecords(std::pmr::memory_resource* mem) : ring_(mem) {}

  void Clear();
  bool empty() const { return head_ == tail_; }
  uint32_t first_id() const { return head_; }
  uint32_t end_id() const { return tail_; }
  Record& at(uint32_t id) { return ring_[id & mask_]; }
  const Record& at(uint32_t id) const { return ring_[id & mask_]; }
  SeqNum end_seq() const { return at(tail_ - 1).end; }  // only when !empty()

  // New data [start, end) sent at `now`, directly after the last record.
  void Append(SeqNum start, SeqNum end, Instant now);
  // The id of the first record ending after `seq` (end_id() if none).
  uint32_t Find(SeqNum seq) const;

  void MarkSacked(uint32_t id);
  void MarkLost(uint32_t id);
  // Forgets a SACK for the record (the receiver reneged, RFC 2018 section 8).
  void Unsack(uint32_t id);
  // Sent again at `now`: moves to the tail of the time list.
  void MarkRetransmitted(uint32_t id, Instant now);
  // Clears every loss mark that has not been retransmitted yet (undo, RFC 3522 / RFC 2883;
  // Linux tcp_undo_cwnd_reduction with unmark_loss) and rebuilds the time list.
  void UnmarkLost();

  // Removes the records below `una` (trimming one that straddles it). `acked(rec, whole)` is
  // called for each record this acknowledges, before it is removed or trimmed: `whole` false
  // for the one that straddles `una`. Records SACKed before are passed too (see their flags).
  template <typename F>
  void AckTo(SeqNum una, F&& acked) {
    while (!empty()) {
      Record& r = at(head_);
      if (r.start >= una) break;
      if (r.end > una) {
        // Partially acknowledged: the rest stays, with its counters shrunk.
        acked(static_cast<const Record&>(r), false);
        const auto cut = static_cast<uint32_t>(una - r.start);
        Count(r, -static_cast<int64_t>(cut), 0);
        r.start = una;
        break;
      }
      acked(static_cast<const Record&>(r), true);
      Count(r, -static_cast<int64_t>(r.len()), -1);
      Unlink(head_);
      ++head_;
    }
    if (lost_cursor_ - head_ > tail_ - head_) lost_cursor_ = head_;
    // Everything in flight is acknowledged: an idle connection keeps no ring.
    if (empty()) Release();
  }

  // The first record marked lost and not yet retransmitted, at or after the cursor.
  uint32_t NextLost();

  // The oldest transmission still on the time list (kNil if none).
  uint32_t oldest() const { return list_head_; }

  uint32_t sacked_bytes() const { return sacked_; }
  uint32_t lost_bytes() const { return lost_; }
  uint32_t retrans_bytes() const { return retrans_; }
  uint32_t sacked_segments() const { return sacked_segs_; }
  uint32_t lost_segments() const { return lost_segs_; }
  uint32_t retrans_segments() const { return retrans_segs_; }
  // Segments in flight, as Linux's tcp_packets_in_flight: out - SACKed - lost + retransmitted.
  uint32_t packets_in_flight() const {
    return (tail_ - head_) - sacked_segs_ - lost_segs_ + retrans_segs_;
  }
  // Segments ever marked lost (a running count, as Linux's tp->lost): the difference across
  // an ACK is what that ACK found lost.
  uint32_t lost_marked() const { return lost_marked_; }

 private:
  void Grow();
  void Release();  // frees the ring; only when empty()
  void Link(uint32_t id);    // append at the time list's tail
  void Unlink(uint32_t id);  // no-op when not on the list
  // Adds (or with a negative delta, removes) `bytes` and `segs` segments of `r` to the counters
  // its flags select.
  void Count(const Record& r, int64_t bytes, int segs);

  std::pmr::vector<Record> ring_;
  uint32_t mask_ = 0;
  uint32_t head_ = 0;  // id of the first record
  uint32_t tail_ = 0;  // one past the last
  uint32_t list_head_ = kNil;
  uint32_t list_tail_ = kNil;
  uint32_t lost_cursor_ = 0;
  uint32_t sacked_ = 0;
  uint32_t lost_ = 0;
  uint32_t retrans_ = 0;
  uint32_t sacked_segs_ = 0;
  uint32_t lost_segs_ = 0;
  uint32_t retrans_segs_ = 0;
  uint32_t lost_marked_ = 0;
};

}  // namespace shake
