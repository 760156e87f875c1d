// The command line: rightsd serve|migrate|check-config|token new|keygen|audit verify [--config FILE].
#pragma once

namespace rightsd {
int RunCli(int argc, char** argv);
}
