#include "tests/conformance/pycode.h"

#include <cctype>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace conformance {
namespace {

struct Unsupported : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Eval {
 public:
  Eval(const std::string& s, const std::map<std::string, int64_t>& vars,
       const std::map<std::string, int64_t>& globals)
      : s_(s), vars_(vars), globals_(globals) {}

  int64_t Expr() { return Or(); }
  bool AtEnd() {
    Space();
    return i_ >= s_.size();
  }
  bool Accept(const std::string& t) {
    Space();
    if (s_.compare(i_, t.size(), t) != 0) return false;
    // Keywords must end at a word boundary.
    if (std::isalpha(static_cast<unsigned char>(t.back())) && i_ + t.size() < s_.size() &&
        (std::isalnum(static_cast<unsigned char>(s_[i_ + t.size()])) || s_[i_ + t.size()] == '_')) {
      return false;
    }
    i_ += t.size();
    return true;
  }
  size_t pos() const { return i_; }

 private:
  void Space() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  int64_t Or() {
    int64_t v = And();
    while (Accept("or")) {
      const int64_t r = And();
      v = (v != 0 || r != 0) ? 1 : 0;
    }
    return v;
  }
  int64_t And() {
    int64_t v = Not();
    while (Accept("and")) {
      const int64_t r = Not();
      v = (v != 0 && r != 0) ? 1 : 0;
    }
    return v;
  }
  int64_t Not() {
    if (Accept("not")) return Not() == 0 ? 1 : 0;
    return Compare();
  }
  int64_t BitOr() {
    int64_t v = BitAnd();
    while (PeekSingle('|')) v |= BitAnd();
    return v;
  }
  int64_t BitAnd() {
    int64_t v = Sum();
    while (PeekSingle('&')) v &= Sum();
    return v;
  }
  bool PeekSingle(char op) {
    Space();
    if (i_ < s_.size() && s_[i_] == op) {
      ++i_;
      return true;
    }
    return false;
  }
  int64_t Compare() {
    int64_t left = BitOr();
    bool result = true;
    bool any = false;
    for (;;) {
      int op = 0;
      if (Accept("==")) op = 1;
      else if (Accept("!=")) op = 2;
      else if (Accept("<=")) op = 3;
      else if (Accept(">=")) op = 4;
      else if (Accept("<")) op = 5;
      else if (Accept(">")) op = 6;
      if (op == 0) break;
      const int64_t right = BitOr();
      bool r = false;
      switch (op) {
        case 1: r = left == right; break;
        case 2: r = left != right; break;
        case 3: r = left <= right; break;
        case 4: r = left >= right; break;
        case 5: r = left < right; break;
        default: r = left > right; break;
      }
      result = result && r;
      any = true;
      left = right;
    }
    return any ? (result ? 1 : 0) : left;
  }
  int64_t Sum() {
    int64_t v = Product();
    for (;;) {
      if (Accept("+")) v += Product();
      else if (Accept("-")) v -= Product();
      else return v;
    }
  }
  int64_t Product() {
    int64_t v = Unary();
    for (;;) {
      if (Accept("//") || Accept("/")) {
        const int64_t d = Unary();
        if (d == 0) throw Unsupported("division by zero");
        v /= d;
      } else if (Accept("*")) {
        v *= Unary();
      } else if (Accept("%")) {
        const int64_t d = Unary();
        if (d == 0) throw Unsupported("modulo by zero");
        v %= d;
      } else {
        return v;
      }
    }
  }
  int64_t Unary() {
    if (Accept("-")) return -Unary();
    return Atom();
  }
  int64_t Atom() {
    Space();
    if (Accept("(")) {
      const int64_t v = Expr();
      if (!Accept(")")) throw Unsupported("expected ')'");
      return v;
    }
    if (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      size_t used = 0;
      const int64_t v = std::stoll(s_.substr(i_), &used, 0);
      i_ += used;
      return v;
    }
    const size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) ++i_;
    const std::string name = s_.substr(start, i_ - start);
    if (name.empty()) throw Unsupported("unexpected '" + s_.substr(start, 10) + "'");
    if (auto it = globals_.find(name); it != globals_.end()) return it->second;
    if (auto it = vars_.find(name); it != vars_.end()) return it->second;
    throw Unsupported("unknown name '" + name + "'");
  }

  const std::string& s_;
  const std::map<std::string, int64_t>& vars_;
  const std::map<std::string, int64_t>& globals_;
  size_t i_ = 0;
};

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  return s.substr(a, s.find_last_not_of(" \t\r\n") - a + 1);
}

// Splits on newlines and on `;` outside quotes.
std::vector<std::string> Statements(const std::string& code) {
  std::vector<std::string> out;
  std::string cur;
  char quote = 0;
  bool in_comment = false;
  for (char ch : code) {
    if (in_comment) {
      if (ch != '\n') continue;
      in_comment = false;
    }
    if (quote != 0) {
      if (ch == quote) quote = 0;
      cur += ch;
      continue;
    }
    if (ch == '\'' || ch == '"') quote = ch;
    if (ch == '#') {  // a comment runs to the end of the line
      in_comment = true;
      continue;
    }
    if (ch == ';' || ch == '\n') {
      out.push_back(Trim(cur));
      cur.clear();
      continue;
    }
    cur += ch;
  }
  out.push_back(Trim(cur));
  return out;
}

bool IsName(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  for (char ch : s) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') return false;
  }
  return true;
}

}  // namespace

CodeResult RunCode(const std::string& code_in, const std::map<std::string, int64_t>& vars,
                   std::map<std::string, int64_t>& globals) {
  CodeResult r;
  std::string code;  // a backslash at the end of a line continues it
  for (size_t i = 0; i < code_in.size(); ++i) {
    if (code_in[i] == '\\' && i + 1 < code_in.size() && code_in[i + 1] == '\n') {
      code += ' ';
      ++i;
    } else {
      code += code_in[i];
    }
  }
  try {
    for (std::string st : Statements(code)) {
      if (st.empty()) continue;
      if (st.rfind("print", 0) == 0) continue;  // output only
      if (st.rfind("assert", 0) == 0 && st.size() > 6 && std::isspace(static_cast<unsigned char>(st[6]))) {
        const std::string body = st.substr(7);
        Eval e(body, vars, globals);
        const int64_t v = e.Expr();
        if (!e.AtEnd() && !e.Accept(",")) throw Unsupported("cannot read '" + st + "'");
        if (v == 0) {
          r.kind = CodeResult::Kind::kAssertFailed;
          r.message = "assertion failed: " + Trim(body);
          // Report the tcpi_* values the assertion names.
          std::string shown;
          for (const auto& [name, value] : vars) {
            if (name.rfind("tcpi_", 0) == 0 && body.find(name) != std::string::npos &&
                shown.find(name + "=") == std::string::npos) {
              shown += (shown.empty() ? "" : ", ") + name + "=" + std::to_string(value);
            }
          }
          for (const auto& [name, value] : globals) {
            if (body.find(name) != std::string::npos) {
              shown += (shown.empty() ? "" : ", ") + name + "=" + std::to_string(value);
            }
          }
          if (!shown.empty()) r.message += " (actual: " + shown + ")";
          return r;
        }
        continue;
      }
      // NAME = E, NAME += E, NAME -= E
      size_t op = st.find('=');
      if (op != std::string::npos && op > 0) {
        char mod = 0;
        std::string name = Trim(st.substr(0, op));
        if (!name.empty() && (name.back() == '+' || name.back() == '-')) {
          mod = name.back();
          name = Trim(name.substr(0, name.size() - 1));
        }
        if (IsName(name) && (op + 1 >= st.size() || st[op + 1] != '=')) {
          const std::string rhs = st.substr(op + 1);
          Eval e(rhs, vars, globals);
          const int64_t v = e.Expr();
          if (!e.AtEnd()) throw Unsupported("cannot read '" + st + "'");
          const bool had = globals.count(name) != 0;
          int64_t& slot = globals[name];
          if (mod == 0) {
            slot = v;
          } else {
            if (!had && vars.count(name) != 0) slot = vars.at(name);
            slot = mod == '+' ? slot + v : slot - v;
          }
          continue;
        }
      }
      throw Unsupported("Python statement not supported by the runner: '" + st + "'");
    }
  } catch (const Unsupported& u) {
    r.kind = CodeResult::Kind::kUnsupported;
    r.message = u.what();
  } catch (const std::exception& e) {
    r.kind = CodeResult::Kind::kUnsupported;
    r.message = std::string("cannot evaluate the code block: ") + e.what();
  }
  return r;
}

}  // namespace conformance
