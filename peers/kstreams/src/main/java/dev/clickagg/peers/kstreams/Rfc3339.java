package dev.clickagg.peers.kstreams;

/**
 * RFC 3339 times as clickagg reads them (its parseRFC3339, which matches Go's
 * time.Parse(time.RFC3339Nano, s)): a one-digit hour, ',' as the fraction
 * separator, any number of fraction digits (those past the ninth ignored)
 * and zone offsets up to +24:60 are accepted; the result is truncated to
 * milliseconds.
 */
final class Rfc3339 {
    static final long INVALID = Long.MIN_VALUE;

    private Rfc3339() {
    }

    static long parse(byte[] s, int off, int end) {
        int len = end - off;
        if (len < 11 || s[off + 4] != '-' || s[off + 7] != '-' || s[off + 10] != 'T') {
            return INVALID;
        }
        long year = digits(s, off, off + 4);
        long month = digits(s, off + 5, off + 7);
        long day = digits(s, off + 8, off + 10);
        if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year)) {
            return INVALID;
        }
        int i = off + 11;
        int hourLen = 1;
        if (end - i >= 2 && isDigit(s[i + 1])) {
            hourLen = 2;
        }
        if (end - i < hourLen + 6 || s[i + hourLen] != ':' || s[i + hourLen + 3] != ':') {
            return INVALID;
        }
        long hour = digits(s, i, i + hourLen);
        long minute = digits(s, i + hourLen + 1, i + hourLen + 3);
        long sec = digits(s, i + hourLen + 4, i + hourLen + 6);
        if (hour < 0 || minute < 0 || sec < 0 || hour > 23 || minute > 59 || sec > 59) {
            return INVALID;
        }
        i += hourLen + 6;

        long nsec = 0;
        if (end - i >= 2 && (s[i] == '.' || s[i] == ',') && isDigit(s[i + 1])) {
            int k = 1;
            while (i + k < end && isDigit(s[i + k])) {
                if (k <= 9) {
                    nsec = nsec * 10 + (s[i + k] - '0');
                }
                k++;
            }
            for (int z = k; z <= 9; z++) {
                nsec *= 10;
            }
            i += k;
        }

        long offset = 0;
        int rest = end - i;
        if (rest == 1 && s[i] == 'Z') {
            // UTC
        } else if (rest == 6 && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
            long hh = digits(s, i + 1, i + 3);
            long mm = digits(s, i + 4, i + 6);
            if (hh < 0 || mm < 0 || hh > 24 || mm > 60) {
                return INVALID;
            }
            offset = (hh * 60 + mm) * 60;
            if (s[i] == '-') {
                offset = -offset;
            }
        } else {
            return INVALID;
        }
        long secs = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - offset;
        return secs * 1000 + nsec / 1_000_000;
    }

    private static boolean isDigit(byte c) {
        return c >= '0' && c <= '9';
    }

    /** The value of an all-digit field, or -1. */
    private static long digits(byte[] s, int from, int to) {
        long v = 0;
        for (int k = from; k < to; k++) {
            if (!isDigit(s[k])) {
                return -1;
            }
            v = v * 10 + (s[k] - '0');
        }
        return v;
    }

    private static long daysIn(long month, long year) {
        if (month == 2) {
            return (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)) ? 29 : 28;
        }
        if (month == 4 || month == 6 || month == 9 || month == 11) {
            return 30;
        }
        return 31;
    }

    /** Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's algorithm). */
    private static long daysFromCivil(long y, long m, long d) {
        if (m <= 2) {
            y--;
        }
        long era = Math.floorDiv(y, 400);
        long yoe = y - era * 400;
        long doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
        long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return era * 146097 + doe - 719468;
    }
}
