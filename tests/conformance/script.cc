#include "tests/conformance/script.h"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

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
           (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
            (s_[pos_] == '.' && s_.compare(pos_, 2, "..") != 0)))
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

Expr ParseExpr(Cursor& c);

// One term of an or-expression: a word, or a call such as `inet_addr("1.2.3.4")`.
Expr ParseTerm(Cursor& c) {
  Expr e;
  e.kind = Expr::Kind::kOr;
  const std::string w = c.Word();
  if (c.Raw() == '(' && !w.empty() && std::isalpha(static_cast<unsigned char>(w[0]))) {
    Expr call;
    call.kind = Expr::Kind::kCall;
    call.text = w;
    c.Expect("(");
    if (!c.Accept(")")) {
      do call.items.push_back(ParseExpr(c)); while (c.Accept(","));
      c.Expect(")");
    }
    return call;
  }
  e.terms.push_back(w);
  return e;
}

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
        // `name=value`, `name(count)=value`, or an unnamed item such as `...` or `100`.
        const size_t at = c.pos();
        std::string name;
        if (std::isalpha(static_cast<unsigned char>(c.Peek())) || c.Peek() == '_') {
          name = c.Ident();
          if (c.Raw() == '(') {
            c.SkipParenText();
          }
          if (!c.Accept("=")) {
            c.set_pos(at);
            name.clear();
          }
        }
        e.fields.emplace_back(name, ParseExpr(c));
      } while (c.Accept(","));
      c.Expect("}");
    }
    return e;
  }
  if (c.Peek() == '"') {
    e.kind = Expr::Kind::kString;
    while (c.Peek() == '"') {  // adjacent strings concatenate
      c.Expect("\"");
      while (c.Raw() != '\0' && c.Raw() != '"') {
        e.text += c.Raw();
        c.set_pos(c.pos() + 1);
      }
      c.Expect("\"");
    }
    c.Accept("...");
    return e;
  }
  Expr first = ParseTerm(c);
  if (first.kind == Expr::Kind::kCall) return first;
  e.kind = Expr::Kind::kOr;
  e.terms = first.terms;
  while (c.Accept("|")) {
    Expr t = ParseTerm(c);
    if (t.kind != Expr::Kind::kOr) c.Fail("a call cannot be or'ed");
    e.terms.push_back(t.terms[0]);
  }
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
  return s;
}

uint32_t ParseU32(Cursor& c) { return static_cast<uint32_t>(c.Number(0xffffffffu)); }

std::vector<TcpOption> ParseTcpOptions(Cursor& c, PacketSpec& p) {
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
    } else if (name == "FO" || name == "FOEXP") {
      // TCP Fast Open (RFC 7413): kind 34, or the experimental kind 254 with magic 0xF989.
      o.kind = TcpOption::Kind::kOther;
      o.a = name == "FO" ? 34 : 254;
      if (name == "FOEXP") o.data = {0xF9, 0x89};
      c.SkipSpace();
      std::string hex;
      while (std::isxdigit(static_cast<unsigned char>(c.Raw()))) {
        hex += c.Raw();
        c.set_pos(c.pos() + 1);
      }
      if (hex.size() % 2 != 0) c.Fail("a Fast Open cookie needs an even number of hex digits");
      for (size_t i = 0; i < hex.size(); i += 2) {
        o.data.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
      }
    } else if (name == "md5") {
      c.Fail("unsupported TCP option 'md5' (TCP-MD5 signatures)");
    } else if (name == "ECN") {
      c.Fail("unsupported TCP option 'ECN' (AccECN)");
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
    const std::string w = c.Ident();
    if (w == "port") {
      p.remote_port = static_cast<uint16_t>(c.Number(0xffff));
    } else if (w == "noecn" || w == "ect1" || w == "ect0" || w == "ce") {
      // RFC 3168 5: 00 not-ECT, 01 ECT(1), 10 ECT(0), 11 CE.
      p.ecn = static_cast<uint8_t>(w == "noecn" ? 0 : w == "ect1" ? 1 : w == "ect0" ? 2 : 3);
    } else if (w == "ect01") {
      p.ecn_ect01 = true;
    } else if (w == "tos") {
      p.tos = static_cast<uint8_t>(c.Number(0xff));
    } else {
      c.Fail("unsupported packet annotation '[" + w + "]' (known: port N, noecn, ect0, ect1, "
             "ect01, ce, tos N)");
    }
    c.Expect("]");
  }
  if (c.Accept("icmp")) {
    // `< icmp unreachable frag_needed mtu 800`: an ICMP error quoting the system's last
    // segment on the connection (RFC 792, RFC 1191).
    p.icmp = true;
    p.icmp_type = c.Ident();
    if (!c.AtEnd() && !c.PeekWord("mtu") && c.Peek() != '[') p.icmp_code = c.Ident();
    if (c.Accept("mtu")) p.icmp_mtu = static_cast<uint16_t>(c.Number(0xffff));
    if (c.Accept("[")) {  // the quoted segment: [start:end(len)], relative to the system's ISN
      const uint32_t start = ParseU32(c);
      c.Expect(":");
      ParseU32(c);
      c.Expect("(");
      ParseU32(c);
      c.Expect(")");
      c.Expect("]");
      p.icmp_quoted_seq = start;
    }
    if (!c.AtEnd()) c.Fail("unexpected text in an icmp line");
    if (!p.inbound) c.Fail("only inbound (<) icmp packets are supported");
    return p;
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
  if (!any && c.Raw() == '-') {  // packetdrill: no flags at all
    c.set_pos(c.pos() + 1);
    any = true;
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
    } else if (c.Accept("urg")) {
      p.urg = static_cast<uint16_t>(c.Number(0xffff));
    } else if (c.Peek() == '<') {
      p.options = ParseTcpOptions(c, p);
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
  if (c.Accept("...")) {
    t.end_us = c.Seconds();
    if (*t.end_us < t.lo_us) c.Fail("a blocking call's end time is before its start");
  }
  return t;
}

bool IsWordChar(char ch) {
  return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_';
}

// Replaces whole-word occurrences of each -D name.
std::string ApplyDefines(std::string text, const ParseOptions& options) {
  for (const auto& [name, value] : options.defines) {
    if (name.empty()) continue;
    size_t at = 0;
    while ((at = text.find(name, at)) != std::string::npos) {
      const bool left = at == 0 || !IsWordChar(text[at - 1]);
      const bool right = at + name.size() >= text.size() || !IsWordChar(text[at + name.size()]);
      if (left && right) {
        text.replace(at, name.size(), value);
        at += value.size();
      } else {
        at += name.size();
      }
    }
  }
  return text;
}

// Is the statement open: an unclosed bracket, backtick command or %{ }% block?
bool StatementOpen(const std::string& s) {
  int depth = 0;
  bool in_str = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '`') {
      const size_t close = s.find('`', i + 1);
      if (close == std::string::npos) return true;
      i = close;
      continue;
    }
    if (ch == '%' && i + 1 < s.size() && s[i + 1] == '{') {
      const size_t close = s.find("}%", i + 2);
      if (close == std::string::npos) return true;
      i = close + 1;
      continue;
    }
    if (ch == '"') in_str = !in_str;
    if (in_str) continue;
    if (ch == '(' || ch == '[' || ch == '{') ++depth;
    if (ch == ')' || ch == ']' || ch == '}') --depth;
  }
  return depth > 0;
}

}  // namespace

Script ParseScriptText(const std::string& path, const std::string& text,
                       const ParseOptions& options) {
  Script script;
  script.path = path;
  const std::string clean = ApplyDefines(StripComments(path, text), options);
  std::vector<std::string> lines;
  {
    std::istringstream in(clean);
    std::string line;
    while (std::getline(in, line)) lines.push_back(line);
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    const int lineno = static_cast<int>(i) + 1;
    std::string stmt = lines[i];
    const size_t first = stmt.find_first_not_of(" \t\r");
    if (first == std::string::npos) continue;
    if (stmt.compare(first, 2, "--") == 0 && script.events.empty()) {
      // A command-line setting: --name=value or --name.
      std::string setting = stmt.substr(first + 2);
      setting.erase(setting.find_last_not_of(" \t\r") + 1);
      const size_t eq = setting.find('=');
      script.settings.emplace_back(setting.substr(0, eq),
                                   eq == std::string::npos ? "" : setting.substr(eq + 1));
      continue;
    }
    while (StatementOpen(stmt) && i + 1 < lines.size()) stmt += "\n" + lines[++i];
    Cursor c(path, lineno, stmt);
    Event ev;
    ev.line = lineno;
    ev.source = stmt.substr(first);
    if (const size_t nl = ev.source.find('\n'); nl != std::string::npos) {
      ev.source = ev.source.substr(0, nl) + " ...";
    }
    if (c.Peek() == '`' || c.PeekWord("%{")) {
      ev.time.kind = TimeSpec::Kind::kRelative;
      ev.time.given = false;
    } else {
      ev.time = ParseTime(c);
    }
    const char ch = c.Peek();
    if (ch == '`') {
      c.Expect("`");
      const size_t close = stmt.find('`', c.pos());
      if (close == std::string::npos) c.Fail("unterminated `command`");
      ev.what = CommandSpec{stmt.substr(c.pos(), close - c.pos())};
      c.set_pos(close + 1);
      if (!c.AtEnd()) c.Fail("unexpected text after the command");
    } else if (c.PeekWord("%{")) {
      c.Expect("%{");
      const size_t close = stmt.find("}%", c.pos());
      if (close == std::string::npos) c.Fail("unterminated %{ code }%");
      ev.what = CodeSpec{stmt.substr(c.pos(), close - c.pos())};
      c.set_pos(close + 2);
      if (!c.AtEnd()) c.Fail("unexpected text after the code block");
    } else if (ch == '<' || ch == '>') {
      ev.what = ParsePacket(c);
    } else if (std::isalpha(static_cast<unsigned char>(ch))) {
      ev.what = ParseSyscall(c);
    } else {
      c.Fail("expected '<', '>', a system call, a `command` or %{ code }% after the time");
    }
    if (ev.time.end_us && !std::holds_alternative<SyscallSpec>(ev.what)) {
      c.Fail("only a system call may have an end time (start...end)");
    }
    script.events.push_back(std::move(ev));
  }
  if (script.events.empty()) throw ScriptError(path + ":1: the script has no events");
  return script;
}

Script ParseScript(const std::string& path, const ParseOptions& options) {
  std::ifstream f(path);
  if (!f) throw ScriptError(path + ":0: cannot open the script");
  std::stringstream ss;
  ss << f.rdbuf();
  return ParseScriptText(path, ss.str(), options);
}

}  // namespace conformance
