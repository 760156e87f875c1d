#include "cli.h"

int main(int argc, char** argv) { return rightsd::RunCli(argc, argv); }
