#include "runtime/common/npy.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sluice {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

// Returns the value text of `key` in the header dict, e.g. "'<f4'" for 'descr'.
std::string HeaderField(const std::string& header, const std::string& key) {
  const std::string quoted = "'" + key + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string::npos) return "";
  pos = header.find(':', pos);
  if (pos == std::string::npos) return "";
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  if (pos < header.size() && header[pos] == '(') {
    size_t end = header.find(')', pos);
    return end == std::string::npos ? "" : header.substr(pos, end - pos + 1);
  }
  size_t end = header.find_first_of(",}", pos);
  return header.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
}

}  // namespace

absl::StatusOr<NpyArray> ParseNpy(const std::string& bytes, const std::string& what) {
  if (bytes.size() < 10 || bytes.compare(0, 6, kMagic, 6) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a .npy file (bad magic)"));
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  size_t header_len = 0;
  size_t header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) return absl::InvalidArgumentError(absl::StrCat(what, ": truncated"));
    for (int i = 0; i < 4; ++i) {
      header_len |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    }
    header_start = 12;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(what, ": unsupported .npy version ", major));
  }
  if (header_start + header_len > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": truncated header"));
  }
  const std::string header = bytes.substr(header_start, header_len);
  const std::string descr = HeaderField(header, "descr");
  if (descr != "'<f4'" && descr != "'float32'") {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": dtype ", descr, " is not little-endian float32 ('<f4')"));
  }
  if (HeaderField(header, "fortran_order") != "False") {
    return absl::InvalidArgumentError(absl::StrCat(what, ": Fortran order is not supported"));
  }
  std::string shape_text = HeaderField(header, "shape");
  if (shape_text.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": header has no shape"));
  }
  NpyArray array;
  int64_t count = 1;
  for (absl::string_view part :
       absl::StrSplit(shape_text.substr(1, shape_text.size() - 2), ',', absl::SkipWhitespace())) {
    int64_t dim = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &dim) || dim < 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad shape ", shape_text));
    }
    array.shape.push_back(dim);
    if (dim != 0 && count > std::numeric_limits<int64_t>::max() / 8 / dim) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape ", shape_text, " is too large"));
    }
    count *= dim;
  }
  const size_t data_start = header_start + header_len;
  if (bytes.size() - data_start != static_cast<size_t>(count) * sizeof(float)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": data holds ", bytes.size() - data_start,
                                                   " bytes, shape ", shape_text, " needs ",
                                                   count * sizeof(float)));
  }
  array.data.resize(count);
  if (count > 0) std::memcpy(array.data.data(), bytes.data() + data_start, count * sizeof(float));
  return array;
}

absl::StatusOr<NpyArray> ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseNpy(buffer.str(), path);
}

absl::Status WriteNpy(const std::string& path, const NpyArray& array) {
  std::string shape = absl::StrJoin(array.shape, ", ");
  if (array.shape.size() == 1) shape += ",";
  std::string header =
      absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", shape, "), }");
  // Pad so that magic(6) + version(2) + len(2) + header + '\n' is a multiple of 64.
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot write ", path));
  out.write(kMagic, 6);
  const char version[2] = {1, 0};
  out.write(version, 2);
  const char len[2] = {static_cast<char>(header.size() & 0xff),
                       static_cast<char>(header.size() >> 8)};
  out.write(len, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(array.data.data()), array.data.size() * sizeof(float));
  if (!out) return absl::DataLossError(absl::StrCat("short write to ", path));
  return absl::OkStatus();
}

}  // namespace sluice
