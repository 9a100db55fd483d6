# the last line is not terminated
# expect: error ws_line_not_terminated 4
/x\r\n
host: a
