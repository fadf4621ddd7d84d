#include "tests/conformance/commands.h"

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace conformance {
namespace {

std::string Trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string::npos) return "";
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

// `$((15*1024*1024))` and plain integers: the shell arithmetic the scripts use (+, -, *).
bool EvalArith(const std::string& e, int64_t* out) {
  int64_t total = 0;
  int64_t term = 1;
  int sign = 1;
  size_t i = 0;
  bool any = false;
  while (i < e.size()) {
    if (std::isspace(static_cast<unsigned char>(e[i]))) {
      ++i;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(e[i]))) {
      size_t used = 0;
      const int64_t v = std::stoll(e.substr(i), &used, 0);
      term *= v;
      i += used;
      any = true;
      continue;
    }
    if (e[i] == '*') {
      ++i;
      continue;
    }
    if (e[i] == '+' || e[i] == '-') {
      total += sign * term;
      sign = e[i] == '-' ? -1 : 1;
      term = 1;
      ++i;
      continue;
    }
    return false;
  }
  if (!any) return false;
  *out = total + sign * term;
  return true;
}

// Expands $((...)) and removes quotes from one shell word.
std::string Unquote(const std::string& w) {
  std::string out;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] == '"' || w[i] == '\'') continue;
    if (w.compare(i, 3, "$((") == 0) {
      const size_t close = w.find("))", i + 3);
      int64_t v = 0;
      if (close != std::string::npos && EvalArith(w.substr(i + 3, close - i - 3), &v)) {
        out += std::to_string(v);
        i = close + 1;
        continue;
      }
    }
    out += w[i];
  }
  return out;
}

// Shell words, keeping quoted spans together.
std::vector<std::string> Words(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  char quote = 0;
  int paren = 0;
  for (char ch : s) {
    if (quote != 0) {
      cur += ch;
      if (ch == quote) quote = 0;
      continue;
    }
    if (ch == '"' || ch == '\'') {
      quote = ch;
      cur += ch;
      continue;
    }
    if (ch == '(') ++paren;
    if (ch == ')') --paren;
    if (std::isspace(static_cast<unsigned char>(ch)) && paren == 0) {
      if (!cur.empty()) words.push_back(cur);
      cur.clear();
      continue;
    }
    cur += ch;
  }
  if (!cur.empty()) words.push_back(cur);
  return words;
}

// "/proc/sys/net/ipv4/tcp_sack" -> "net.ipv4.tcp_sack".
std::string ProcToKey(const std::string& path) {
  std::string k = path.substr(std::string("/proc/sys/").size());
  for (char& ch : k) {
    if (ch == '/') ch = '.';
  }
  return k;
}

// Removes a trailing redirection such as `> /dev/null 2>&1` (not `> /proc/...`).
std::string DropDevNull(std::string s) {
  for (const char* r : {"2>&1", ">/dev/null", "> /dev/null", "2>/dev/null", "2> /dev/null"}) {
    size_t at;
    while ((at = s.find(r)) != std::string::npos) s.erase(at, std::string(r).size());
  }
  return Trim(s);
}

void ParseOne(const std::string& raw, const std::string& dir, int depth,
              std::vector<CommandItem>& out);

void ParseText(const std::string& raw, const std::string& dir, int depth,
               std::vector<CommandItem>& out) {
  std::string text;  // a backslash at the end of a line continues it
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\\' && i + 1 < raw.size() && raw[i + 1] == '\n') {
      text += ' ';
      ++i;
    } else {
      text += raw[i];
    }
  }
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    // A `#` outside quotes starts a shell comment.
    char quote = 0;
    for (size_t i = 0; i < line.size(); ++i) {
      if (quote != 0) {
        if (line[i] == quote) quote = 0;
      } else if (line[i] == '"' || line[i] == '\'') {
        quote = line[i];
      } else if (line[i] == '#') {
        line.resize(i);
        break;
      }
    }
    size_t start = 0;
    for (size_t i = 0; i <= line.size(); ++i) {
      if (i == line.size() || line[i] == ';') {
        ParseOne(line.substr(start, i - start), dir, depth, out);
        start = i + 1;
      }
    }
  }
}

void ParseOne(const std::string& raw, const std::string& dir, int depth,
              std::vector<CommandItem>& out) {
  const std::string cmd = DropDevNull(Trim(raw));
  if (cmd.empty()) return;
  CommandItem item;
  item.text = cmd;
  std::vector<std::string> w = Words(cmd);
  const std::string prog = w[0];
  auto push_kv = [&](const std::string& kv, bool proc) {
    const std::string u = Unquote(kv);
    const size_t eq = u.find('=');
    CommandItem s = item;
    if (eq == std::string::npos) {
      out.push_back(s);  // a read (sysctl net.x): unknown
      return;
    }
    s.kind = CommandItem::Kind::kSysctl;
    s.key = proc ? ProcToKey(u.substr(0, eq)) : u.substr(0, eq);
    for (char& ch : s.key) {
      if (ch == '/') ch = '.';  // sysctl accepts net/ipv4/x as well as net.ipv4.x
    }
    s.value = Trim(u.substr(eq + 1));
    if (proc && u.rfind("/proc/sys/", 0) != 0) s.kind = CommandItem::Kind::kHostGlobal;
    out.push_back(s);
  };
  if (prog == "sysctl") {
    for (size_t i = 1; i < w.size(); ++i) {
      if (w[i][0] == '-') continue;  // -q, -w
      push_kv(w[i], false);
    }
    return;
  }
  if (prog == "echo" && w.size() >= 3) {
    // echo VALUE > /proc/sys/...: the value may be quoted and have several words.
    const size_t gt = cmd.find('>');
    if (gt != std::string::npos) {
      const std::string target = Trim(cmd.substr(gt + 1));
      const std::string value = Unquote(Trim(cmd.substr(4, gt - 4)));
      if (target.rfind("/proc/sys/", 0) == 0) {
        item.kind = CommandItem::Kind::kSysctl;
        item.key = ProcToKey(target);
        item.value = value;
      } else if (target.rfind("/sys/", 0) == 0) {
        item.kind = CommandItem::Kind::kHostGlobal;
      }
      out.push_back(item);
      return;
    }
  }
  if (prog.size() > 14 && prog.compare(prog.size() - 14, 14, "set_sysctls.py") == 0) {
    for (size_t i = 1; i < w.size(); ++i) push_kv(w[i], true);
    return;
  }
  if (prog == "ethtool" && w.size() >= 5 && (w.size() - 3) % 2 == 0 &&
      (w[1] == "-K" || w[1] == "--offload" || w[1] == "--features")) {
    // ethtool -K DEV FEATURE on|off ...: one item per segmentation offload named; any other
    // feature, or a value other than on/off, leaves the whole command unknown.
    std::vector<CommandItem> items;
    for (size_t i = 3; i + 1 < w.size(); i += 2) {
      const bool tso = w[i] == "tso" || w[i] == "tcp-segmentation-offload";
      const bool gso = w[i] == "gso" || w[i] == "generic-segmentation-offload";
      if ((!tso && !gso) || (w[i + 1] != "on" && w[i + 1] != "off")) {
        out.push_back(item);
        return;
      }
      CommandItem o = item;
      o.kind = CommandItem::Kind::kOffload;
      o.device = w[2];
      o.key = tso ? "tso" : "gso";
      o.value = w[i + 1];
      items.push_back(o);
    }
    out.insert(out.end(), items.begin(), items.end());
    return;
  }
  if (prog == "tc" && w.size() >= 6 && w[1] == "qdisc" && w[3] == "dev" && w[5] == "root") {
    // A root qdisc that holds no packet (pfifo limit 0) makes every transmission fail
    // locally, as packetdrill's scripts use it to emulate a congested host; deleting the root
    // qdisc restores the default.
    const bool add = w[2] == "add" || w[2] == "replace";
    if (add && w.size() == 9 && w[6] == "pfifo" && w[7] == "limit" && w[8] == "0") {
      item.kind = CommandItem::Kind::kQdisc;
      item.device = w[4];
      item.value = "drop";
    } else if ((w[2] == "delete" || w[2] == "del") && w.size() == 6) {
      item.kind = CommandItem::Kind::kQdisc;
      item.device = w[4];
      item.value = "none";
    }
    if (item.kind == CommandItem::Kind::kQdisc) {
      out.push_back(item);
      return;
    }
  }
  if ((prog == "ip" && w.size() >= 2 && w[1] == "tcp_metrics") || prog == "tc" ||
      prog.rfind("/tmp/sysctl_restore_", 0) == 0) {
    item.kind = CommandItem::Kind::kNoOp;
    out.push_back(item);
    return;
  }
  if (w.size() == 1 && prog.size() > 3 && prog.compare(prog.size() - 3, 3, ".sh") == 0 &&
      depth < 4) {
    const std::filesystem::path p = std::filesystem::path(dir) / prog;
    std::ifstream f(p);
    if (f) {
      std::stringstream ss;
      ss << f.rdbuf();
      ParseText(ss.str(), p.parent_path().string(), depth + 1, out);
      return;
    }
  }
  out.push_back(item);
}

}  // namespace

std::vector<CommandItem> ParseCommand(const std::string& text, const std::string& dir) {
  std::vector<CommandItem> out;
  ParseText(text, dir, 0, out);
  return out;
}

}  // namespace conformance
