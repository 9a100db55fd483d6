# a CR not followed by LF
# expect: error ws_bad_line_ending 2
/x\r
\rhost: a\r\n
