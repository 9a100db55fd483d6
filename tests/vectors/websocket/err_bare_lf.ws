# a line ends with LF alone
# expect: error ws_bad_line_ending 2
/x\n
host: a\r\n
