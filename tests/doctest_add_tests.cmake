# Build-time half of tokengate_add_unit_test (tests/CMakeLists.txt), run after
# each link of a doctest executable (cmake -P): lists its test cases and writes
# one CTest test per case into CTEST_FILE, named "<target>: <test case name>".
# It does what doctest's own doctestAddTests.cmake does, except that it never
# splits a name at ';' or mis-parses one with brackets (CMake list handling),
# and it escapes ',' and '\' in the --test-case filter. Inputs (-D): TARGET,
# EXE, WORKDIR, TIMEOUT, CTEST_FILE.

# Listing is not a test: in build-asan, LeakSanitizer's exit check is off for it
# (later ASan options override earlier ones); the test runs keep the caller's.
if(DEFINED ENV{ASAN_OPTIONS} AND NOT "$ENV{ASAN_OPTIONS}" STREQUAL "")
  set(ENV{ASAN_OPTIONS} "$ENV{ASAN_OPTIONS}:detect_leaks=0")
else()
  set(ENV{ASAN_OPTIONS} "detect_leaks=0")
endif()
execute_process(
  COMMAND "${EXE}" --list-test-cases --no-colors=true --no-version=true
  WORKING_DIRECTORY "${WORKDIR}"
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "listing the test cases of ${EXE} failed (${rc}):\n${out}${err}")
endif()

set(script "")
set(count 0)
while(NOT out STREQUAL "")
  string(FIND "${out}" "\n" nl)
  if(nl EQUAL -1)
    set(line "${out}")
    set(out "")
  else()
    string(SUBSTRING "${out}" 0 ${nl} line)
    math(EXPR next "${nl} + 1")
    string(SUBSTRING "${out}" ${next} -1 out)
  endif()
  if(line STREQUAL "" OR line MATCHES "^=+$" OR line MATCHES "^\\[doctest\\] ")
    continue()
  endif()
  if(line MATCHES "\\]==\\]")
    message(FATAL_ERROR "${TARGET}: test case name contains ]==]: ${line}")
  endif()
  # doctest splits --test-case at ',' unless escaped with '\' (and '\\' is '\').
  string(REPLACE "\\" "\\\\" filter "${line}")
  string(REPLACE "," "\\," filter "${filter}")
  set(name "${TARGET}: ${line}")
  string(APPEND script
    "add_test([==[${name}]==] [==[${EXE}]==] [==[--test-case=${filter}]==])\n"
    "set_tests_properties([==[${name}]==] PROPERTIES WORKING_DIRECTORY [==[${WORKDIR}]==]"
    " TIMEOUT ${TIMEOUT} LABELS ${TARGET}"
    # A filter that matched no test case would otherwise pass silently.
    " FAIL_REGULAR_EXPRESSION [==[\\[doctest\\] test cases: +0 \\|]==])\n")
  math(EXPR count "${count} + 1")
endwhile()
if(count EQUAL 0)
  message(FATAL_ERROR "${EXE} lists no test cases:\n${err}")
endif()
file(WRITE "${CTEST_FILE}" "${script}")
