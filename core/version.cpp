#include "core/version.h"

namespace calq::core {

const char* calq_version() { return CALQ_VERSION; }

}  // namespace calq::core
