package clone

// ParseCmdline splits a kernel command line into its parameters as the
// clone reads them: words separated by spaces, double quotes grouping
// spaces into a word, "key=value" or a bare "key" (value ""), the last of
// a key given twice winning.
func ParseCmdline(s string) map[string]string { return parseCmdline(s) }
