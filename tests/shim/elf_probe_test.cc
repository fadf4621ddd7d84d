// Unit tests for the launcher's static/Go program detection, on synthetic ELF files.
#include "shim/launcher/elf_probe.h"

#include <elf.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace shake::launcher {
namespace {

// An ELF64 file with the given program headers; a PT_NOTE gets a note owned by `note_owner`.
std::string WriteElf(const std::string& name, bool interp, const char* note_owner) {
  std::vector<Elf64_Phdr> ph;
  Elf64_Ehdr eh{};
  memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_phoff = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  std::vector<char> note;
  if (note_owner) {
    uint32_t namesz = static_cast<uint32_t>(strlen(note_owner) + 1), descsz = 4, type = 4;
    note.resize(12 + ((namesz + 3) & ~3u) + 4);
    memcpy(&note[0], &namesz, 4);
    memcpy(&note[4], &descsz, 4);
    memcpy(&note[8], &type, 4);
    memcpy(&note[12], note_owner, namesz);
  }
  size_t nph = (interp ? 1 : 0) + (note_owner ? 1 : 0) + 1;
  size_t data_at = sizeof eh + nph * sizeof(Elf64_Phdr);
  Elf64_Phdr load{};
  load.p_type = PT_LOAD;
  ph.push_back(load);
  const char interp_path[] = "/lib64/ld-linux-x86-64.so.2";
  size_t interp_at = data_at, note_at = data_at + sizeof interp_path;
  if (interp) {
    Elf64_Phdr p{};
    p.p_type = PT_INTERP;
    p.p_offset = interp_at;
    p.p_filesz = sizeof interp_path;
    ph.push_back(p);
  }
  if (note_owner) {
    Elf64_Phdr p{};
    p.p_type = PT_NOTE;
    p.p_offset = note_at;
    p.p_filesz = note.size();
    ph.push_back(p);
  }
  eh.e_phnum = static_cast<Elf64_Half>(ph.size());
  std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&eh), sizeof eh);
  f.write(reinterpret_cast<const char*>(ph.data()),
          static_cast<std::streamsize>(ph.size() * sizeof(Elf64_Phdr)));
  f.write(interp_path, sizeof interp_path);
  f.write(note.data(), static_cast<std::streamsize>(note.size()));
  return path;
}

TEST(ElfProbe, DynamicProgram) {
  EXPECT_EQ(ProbeProgram(WriteElf("dyn", true, "GNU")), ProgramKind::kDynamic);
}

TEST(ElfProbe, StaticProgram) {
  EXPECT_EQ(ProbeProgram(WriteElf("static", false, "GNU")), ProgramKind::kStatic);
}

TEST(ElfProbe, GoProgramStaticOrDynamic) {
  EXPECT_EQ(ProbeProgram(WriteElf("go", false, "Go")), ProgramKind::kGo);
  EXPECT_EQ(ProbeProgram(WriteElf("cgo", true, "Go")), ProgramKind::kGo);
}

TEST(ElfProbe, ThisTestIsDynamic) {
  EXPECT_EQ(ProbeProgram("/proc/self/exe"), ProgramKind::kDynamic);
}

TEST(ElfProbe, ScriptsAndMissingFiles) {
  std::string script = ::testing::TempDir() + "/script.sh";
  std::ofstream(script) << "#!/bin/sh\necho hi\n";
  EXPECT_EQ(ProbeProgram(script), ProgramKind::kNotElf);
  EXPECT_EQ(ProbeProgram("/nonexistent/x"), ProgramKind::kUnreadable);
}

TEST(ResolveCommand, SearchesPathUnlessThereIsASlash) {
  EXPECT_EQ(ResolveCommand("./x"), "./x");
  std::string sh = ResolveCommand("sh");
  EXPECT_FALSE(sh.empty());
  EXPECT_EQ(access(sh.c_str(), X_OK), 0);
  EXPECT_EQ(ResolveCommand("shake-no-such-command-xyz"), "");
}

}  // namespace
}  // namespace shake::launcher
