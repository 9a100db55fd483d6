# the last line ends with CR alone
# expect: error ws_line_not_terminated 4
/x\r\n
host: a\r
