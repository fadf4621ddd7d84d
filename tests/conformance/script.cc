#include "tests/conformance/script.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace conformance {
namespace {

// Removes `//` and `/* */` comments, keeping newlines so line numbers stay right.
std::string StripComments(const std::string& path, const std::string& text) {
  std::string out;
  out.reserve(text.size());
  int line = 1;
  int open_line = 0;
  bool in_block = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') ++line;
    if (in_block) {
      if (c == '*' && i + 1 < text.size() && text[i + 1] == '/') {
        in_block = false;
        ++i;
      } else if (c == '\n') {
        out += '\n';
      }
      continue;
    }
    if (c == '/' && i + 1 < text.size() && text[i + 1] == '*') {
      in_block = true;
      open_line = line;
      ++i;
      continue;
    }
    if (c == '/' && i + 1 < text.size() && text[i + 1] == '/') {
      while (i < text.size() && text[i] != '\n') ++i;
      if (i < text.size()) {
        out += '\n';
        ++line;
      }
      continue;
    }
    out += c;
  }
  if (in_block) {
    throw ScriptError(path + ":" + std::to_string(open_line) + ": unterminated /* comment");
  }
  return out;
}

// A cursor over one statement with error reporting.
class Cursor {
 public:
  Cursor(const std::string& path, int line, const std::string& s)
      : path_(path), line_(line), s_(s) {}

  [[noreturn]] void Fail(const std::string& what) const {
    std::string near = s_.substr(pos_, 30);
    throw ScriptError(path_ + ":" + std::to_string(line_) + ": " + what +
                      (near.empty() ? " at end of line" : " near '" + near + "'"));
  }
  void SkipSpace() {
    while (pos_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[pos_]))) ++pos_;
  }
  bool AtEnd() {
    SkipSpace();
    return pos_ >= s_.size();
  }
  char Peek() {
    SkipSpace();
    return pos_ < s_.size() ? s_[pos_] : '\0';
  }
  bool PeekWord(const std::string& w) {
    SkipSpace();
    return s_.compare(pos_, w.size(), w) == 0;
  }
  bool Accept(const std::string& tok) {
    if (!PeekWord(tok)) return false;
    pos_ += tok.size();
    return true;
  }
  void Expect(const std::string& tok) {
    if (!Accept(tok)) Fail("expected '" + tok + "'");
  }
  std::string Word() {  // identifiers, numbers, `-1`, `0x1f`
    SkipSpace();
    size_t start = pos_;
    if (pos_ < s_.size() && (s_[pos_] == '-' || s_[pos_] == '+')) ++pos_;
    while (pos_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_' ||
            s_[pos_] == '.'))
      ++pos_;
    if (start == pos_) Fail("expected a name or number");
    return s_.substr(start, pos_ - start);
  }
  std::string Ident() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < s_.size() &&
           (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_'))
      ++pos_;
    if (start == pos_) Fail("expected a name");
    return s_.substr(start, pos_ - start);
  }
  uint64_t Number(uint64_t max) {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < s_.size() && std::isxdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    if (pos_ < s_.size() && start + 1 == pos_ && s_[start] == '0' && s_[pos_] == 'x') {
      ++pos_;
      while (pos_ < s_.size() && std::isxdigit(static_cast<unsigned char>(s_[pos_]))) ++pos_;
    }
    const std::string w = s_.substr(start, pos_ - start);
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(w.c_str(), &end, 0);
    if (w.empty() || *end != '\0' || errno != 0 || v > max) {
      pos_ = start;
      Fail("expected a number up to " + std::to_string(max));
    }
    return v;
  }
  // Seconds with up to 6 decimals, as microseconds.
  int64_t Seconds() {
    SkipSpace();
    size_t start = pos_;
    while (pos_ < s_.size() &&
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '.'))
      ++pos_;
    const std::string w = s_.substr(start, pos_ - start);
    const size_t dot = w.find('.');
    if (w.empty() || w.find('.', dot == std::string::npos ? 0 : dot + 1) != std::string::npos ||
        (dot != std::string::npos && w.size() - dot - 1 > 6)) {
      pos_ = start;
      Fail("expected a time in seconds (e.g. 0.100)");
    }
    int64_t whole = dot == 0 ? 0 : std::stoll(w.substr(0, dot));
    int64_t frac = 0;
    if (dot != std::string::npos) {
      std::string f = w.substr(dot + 1);
      f.resize(6, '0');
      frac = std::stoll(f);
    }
    return whole * 1000000 + frac;
  }
  // Skips a balanced parenthesised text such as `(Operation now in progress)`.
  void SkipParenText() {
    Expect("(");
    int depth = 1;
    while (pos_ < s_.size() && depth > 0) {
      if (s_[pos_] == '(') ++depth;
      if (s_[pos_] == ')') --depth;
      ++pos_;
    }
    if (depth != 0) Fail("unbalanced parentheses");
  }
  char Raw() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  size_t pos() const { return pos_; }
  void set_pos(size_t p) { pos_ = p; }

 private:
  const std::string& path_;
  int line_;
  const std::string& s_;
  size_t pos_ = 0;
};

Expr ParseExpr(Cursor& c) {
  Expr e;
  if (c.Accept("...")) return e;
  if (c.Accept("[")) {
    e.kind = Expr::Kind::kList;
    if (!c.Accept("]")) {
      do e.items.push_back(ParseExpr(c)); while (c.Accept(","));
      c.Expect("]");
    }
    return e;
  }
  if (c.Accept("{")) {
    e.kind = Expr::Kind::kStruct;
    if (!c.Accept("}")) {
      do {
        std::string name = c.Ident();
        c.Expect("=");
        e.fields.emplace_back(name, ParseExpr(c));
      } while (c.Accept(","));
      c.Expect("}");
    }
    return e;
  }
  if (c.Peek() == '"') {
    c.Expect("\"");
    e.kind = Expr::Kind::kString;
    while (!c.AtEnd() && c.Peek() != '"') {
      e.text += c.Peek();
      c.set_pos(c.pos() + 1);
    }
    c.Expect("\"");
    return e;
  }
  e.kind = Expr::Kind::kOr;
  do e.terms.push_back(c.Word()); while (c.Accept("|"));
  return e;
}

SyscallSpec ParseSyscall(Cursor& c) {
  SyscallSpec s;
  s.name = c.Ident();
  c.Expect("(");
  if (!c.Accept(")")) {
    do s.args.push_back(ParseExpr(c)); while (c.Accept(","));
    c.Expect(")");
  }
  c.Expect("=");
  if (c.Accept("...")) {
    s.result_any = true;
  } else {
    const std::string w = c.Word();
    char* end = nullptr;
    s.result = std::strtoll(w.c_str(), &end, 0);
    if (*end != '\0') c.Fail("expected the call's result, a number");
  }
  if (!c.AtEnd() && std::isupper(static_cast<unsigned char>(c.Peek()))) {
    s.errno_name = c.Ident();
    if (s.result != -1) c.Fail("an errno name needs the result -1");
  }
  if (!c.AtEnd() && c.Peek() == '(') {
    const size_t at = c.pos();
    c.Expect("(");
    if (c.Peek() == '[') {
      s.out_detail = ParseExpr(c);
      c.Expect(")");
    } else {
      c.set_pos(at);
      c.SkipParenText();
    }
  }
  if (!c.AtEnd()) c.Fail("unexpected text after the syscall");
  if (s.result == -1 && s.errno_name.empty() && !s.result_any) {
    c.Fail("a result of -1 needs an errno name, e.g. '= -1 EAGAIN (Resource temporarily unavailable)'");
  }
  return s;
}

uint32_t ParseU32(Cursor& c) { return static_cast<uint32_t>(c.Number(0xffffffffu)); }

std::vector<TcpOption> ParseOptions(Cursor& c, PacketSpec& p) {
  std::vector<TcpOption> out;
  c.Expect("<");
  if (c.Accept("...")) {
    p.options_any = true;
    c.Expect(">");
    return out;
  }
  do {
    TcpOption o;
    const std::string name = c.Ident();
    if (name == "nop") {
      o.kind = TcpOption::Kind::kNop;
    } else if (name == "eol") {
      o.kind = TcpOption::Kind::kEol;
    } else if (name == "mss") {
      o.kind = TcpOption::Kind::kMss;
      o.a = static_cast<uint32_t>(c.Number(0xffff));
    } else if (name == "wscale") {
      o.kind = TcpOption::Kind::kWscale;
      o.a = static_cast<uint32_t>(c.Number(14));
    } else if (name == "sackOK") {
      o.kind = TcpOption::Kind::kSackOk;
    } else if (name == "sack") {
      o.kind = TcpOption::Kind::kSack;
      while (std::isdigit(static_cast<unsigned char>(c.Peek()))) {
        SackBlock b;
        b.left = ParseU32(c);
        c.Expect(":");
        b.right = ParseU32(c);
        o.blocks.push_back(b);
      }
      if (o.blocks.empty() || o.blocks.size() > 4) c.Fail("sack needs 1 to 4 blocks like 1:1001");
    } else if (name == "TS") {
      o.kind = TcpOption::Kind::kTimestamp;
      c.Expect("val");
      o.a = ParseU32(c);
      c.Expect("ecr");
      o.b = ParseU32(c);
    } else {
      c.Fail("unknown TCP option '" + name + "'");
    }
    out.push_back(o);
  } while (c.Accept(","));
  c.Expect(">");
  return out;
}

PacketSpec ParsePacket(Cursor& c) {
  PacketSpec p;
  if (c.Accept("<")) {
    p.inbound = true;
  } else {
    c.Expect(">");
    p.inbound = false;
  }
  if (c.Accept("[")) {
    c.Expect("port");
    p.remote_port = static_cast<uint16_t>(c.Number(0xffff));
    c.Expect("]");
  }
  // Flags: letters then an optional '.', e.g. S. P. F. R. R S . FP.
  c.SkipSpace();
  bool any = false;
  while (true) {
    const char ch = c.Raw();
    uint8_t f = 0;
    switch (ch) {
      case 'S': f = tcpflag::kSyn; break;
      case 'F': f = tcpflag::kFin; break;
      case 'R': f = tcpflag::kRst; break;
      case 'P': f = tcpflag::kPsh; break;
      case 'U': f = tcpflag::kUrg; break;
      case 'E': f = tcpflag::kEce; break;
      case 'W': f = tcpflag::kCwr; break;
      case '.': f = tcpflag::kAck; break;
      default: break;
    }
    if (f == 0) break;
    p.flags |= f;
    any = true;
    c.set_pos(c.pos() + 1);
    if (f == tcpflag::kAck) break;
  }
  if (!any) c.Fail("expected TCP flags (S, S., ., P., F., R, R., ...)");
  const uint32_t start = ParseU32(c);
  c.Expect(":");
  const uint32_t end = ParseU32(c);
  c.Expect("(");
  p.len = ParseU32(c);
  c.Expect(")");
  p.seq = start;
  if (end - start != p.len) c.Fail("sequence range end-start must equal the length");
  while (!c.AtEnd()) {
    if (c.Accept("ack")) {
      p.ack = ParseU32(c);
    } else if (c.Accept("win")) {
      p.win = static_cast<uint32_t>(c.Number(0xffff));
    } else if (c.Peek() == '<') {
      p.options = ParseOptions(c, p);
      p.options_given = true;
    } else {
      c.Fail("unexpected text in a packet line");
    }
  }
  return p;
}

TimeSpec ParseTime(Cursor& c) {
  TimeSpec t;
  if (c.Accept("*")) {
    t.kind = TimeSpec::Kind::kAny;
    return t;
  }
  if (c.Accept("+")) t.kind = TimeSpec::Kind::kRelative;
  t.lo_us = c.Seconds();
  t.hi_us = t.lo_us;
  if (c.Accept("~")) {
    const bool rel = c.Accept("+");
    if (rel != (t.kind == TimeSpec::Kind::kRelative)) {
      c.Fail("both ends of a time range must be relative (+a~+b) or both absolute (a~b)");
    }
    t.hi_us = c.Seconds();
    if (t.hi_us < t.lo_us) c.Fail("time range ends before it starts");
  }
  return t;
}

}  // namespace

Script ParseScriptText(const std::string& path, const std::string& text) {
  Script script;
  script.path = path;
  const std::string clean = StripComments(path, text);
  std::istringstream in(clean);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    Cursor c(path, lineno, line);
    if (c.AtEnd()) continue;
    Event ev;
    ev.line = lineno;
    ev.source = line.substr(line.find_first_not_of(" \t"));
    ev.time = ParseTime(c);
    const char ch = c.Peek();
    if (ch == '<' || ch == '>') {
      ev.what = ParsePacket(c);
    } else if (std::isalpha(static_cast<unsigned char>(ch))) {
      ev.what = ParseSyscall(c);
    } else {
      c.Fail("expected '<', '>' or a system call after the time");
    }
    script.events.push_back(std::move(ev));
  }
  if (script.events.empty()) throw ScriptError(path + ":1: the script has no events");
  return script;
}

Script ParseScript(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw ScriptError(path + ":0: cannot open the script");
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseScriptText(path, ss.str());
}

}  // namespace conformance
