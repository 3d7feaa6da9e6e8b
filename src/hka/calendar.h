// Civil dates and day counts (proleptic Gregorian, days since 1970-01-01), after Howard
// Hinnant's algorithms: one owner for the XLSX reader, the frames and the charts.
#pragma once
#include <cstdint>

namespace kdr::hka::calendar {

struct CivilDate {
  int64_t y = 1970;
  int m = 1;  // 1-12
  int d = 1;  // 1-31
};

int64_t days_from_civil(int64_t y, int m, int d);
CivilDate civil_from_days(int64_t days);

}  // namespace kdr::hka::calendar
