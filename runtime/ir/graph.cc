#include "runtime/ir/graph.h"

namespace sluice::ir {

int64_t Node::IntAttr(const std::string& key, int64_t fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.i;
}

float Node::FloatAttr(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.f;
}

std::string Node::StringAttr(const std::string& key, const std::string& fallback) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? fallback : it->second.s;
}

std::vector<int64_t> Node::IntsAttr(const std::string& key) const {
  auto it = attributes.find(key);
  return it == attributes.end() ? std::vector<int64_t>{} : it->second.ints;
}

const std::string& Node::Input(size_t i) const {
  static const std::string* const kEmpty = new std::string();
  return i < inputs.size() ? inputs[i] : *kEmpty;
}

}  // namespace sluice::ir
