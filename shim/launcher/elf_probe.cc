#include "shim/launcher/elf_probe.h"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace shake::launcher {
namespace {

bool ReadAt(int fd, void* buf, size_t len, off_t off) {
  return pread(fd, buf, len, off) == static_cast<ssize_t>(len);
}

bool NotesHaveGo(const std::vector<char>& notes) {
  size_t pos = 0;
  for (int guard = 0; guard < 256 && pos + 12 <= notes.size(); ++guard) {
    uint32_t namesz, descsz, type;
    memcpy(&namesz, &notes[pos], 4);
    memcpy(&descsz, &notes[pos + 4], 4);
    memcpy(&type, &notes[pos + 8], 4);
    size_t name_at = pos + 12;
    size_t desc_at = name_at + ((namesz + 3u) & ~3u);
    if (desc_at > notes.size()) return false;
    if (namesz == 3 && memcmp(&notes[name_at], "Go", 3) == 0 && type == 4) return true;
    pos = desc_at + ((descsz + 3u) & ~3u);
  }
  return false;
}

template <typename Ehdr, typename Phdr>
ProgramKind ProbeElf(int fd) {
  Ehdr eh;
  if (!ReadAt(fd, &eh, sizeof eh, 0) || eh.e_phentsize != sizeof(Phdr) || eh.e_phnum > 512) {
    return ProgramKind::kUnreadable;
  }
  bool interp = false, go = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Phdr ph;
    if (!ReadAt(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + i * sizeof ph))) {
      return ProgramKind::kUnreadable;
    }
    if (ph.p_type == PT_INTERP) interp = true;
    if (ph.p_type == PT_NOTE && ph.p_filesz > 0 && ph.p_filesz < (1u << 16)) {
      std::vector<char> notes(ph.p_filesz);
      if (ReadAt(fd, notes.data(), notes.size(), static_cast<off_t>(ph.p_offset)) &&
          NotesHaveGo(notes)) {
        go = true;
      }
    }
  }
  if (go) return ProgramKind::kGo;
  return interp ? ProgramKind::kDynamic : ProgramKind::kStatic;
}

}  // namespace

ProgramKind ProbeProgram(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ProgramKind::kUnreadable;
  unsigned char ident[EI_NIDENT] = {};
  ProgramKind kind = ProgramKind::kNotElf;
  if (ReadAt(fd, ident, sizeof ident, 0) && memcmp(ident, ELFMAG, SELFMAG) == 0) {
    if (ident[EI_CLASS] == ELFCLASS64) {
      kind = ProbeElf<Elf64_Ehdr, Elf64_Phdr>(fd);
    } else if (ident[EI_CLASS] == ELFCLASS32) {
      kind = ProbeElf<Elf32_Ehdr, Elf32_Phdr>(fd);
    } else {
      kind = ProgramKind::kUnreadable;
    }
  }
  close(fd);
  return kind;
}

std::string ResolveCommand(const std::string& command) {
  if (command.empty()) return "";
  if (command.find('/') != std::string::npos) return command;
  const char* path = getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t pos = 0;
  while (pos <= dirs.size()) {
    size_t end = dirs.find(':', pos);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(pos, end - pos);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + command;
    struct stat st{};
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    pos = end + 1;
  }
  return "";
}

}  // namespace shake::launcher
