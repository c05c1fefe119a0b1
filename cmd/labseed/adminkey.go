package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/labseed/labseed/keys"
)

// adminKeyEnv names the environment variable that gives the admin key's
// file to the commands that change the lab.
const adminKeyEnv = "LABSEED_ADMIN_KEY"

// adminKeyFlags are the flags with which a command that changes the lab
// (hosts import and next-boot; wake, deploy) finds the admin key.
type adminKeyFlags struct {
	file  *string
	store *string
	fs    *flag.FlagSet
}

// addAdminKeyFlags adds --admin-key and --store to fs.
func addAdminKeyFlags(fs *flag.FlagSet) adminKeyFlags {
	return adminKeyFlags{
		file: fs.String("admin-key", "", "`FILE` with the admin key, on a machine other than the print server (default $"+adminKeyEnv+
			", then ~/.config/labseed/admin.key; 'labseed keys admin FILE' on the print server writes one)"),
		store: fs.String("store", defaultStore, "the print server's store `DIR`, whose keys/admin.key is used when run on the print server"),
		fs:    fs,
	}
}

// errNoAdminKey says where the admin key is looked for.
var errNoAdminKey = errors.New("no admin key: changing the lab needs the admin key (admin.key). " +
	"On the print server, run this as root: it reads STORE/keys/admin.key (--store DIR, default " + defaultStore + "). " +
	"Elsewhere give --admin-key FILE, set $" + adminKeyEnv + "=FILE or put the key in ~/.config/labseed/admin.key; " +
	"'labseed keys admin FILE' on the print server writes a copy of it")

// read finds and reads the admin key: --admin-key FILE; else --store DIR
// when given; else $LABSEED_ADMIN_KEY; else ~/.config/labseed/admin.key;
// else the default store's keys/admin.key.
func (f adminKeyFlags) read() ([]byte, error) {
	given := map[string]bool{}
	f.fs.Visit(func(fl *flag.Flag) { given[fl.Name] = true })
	storeKey := filepath.Join(*f.store, "keys", keys.AdminKeyFile)
	var candidates []string
	switch {
	case *f.file != "":
		return readAdminKey(*f.file)
	case given["store"]:
		if _, err := os.Stat(storeKey); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w (%s does not exist)", errNoAdminKey, storeKey)
		}
		return readAdminKey(storeKey)
	case os.Getenv(adminKeyEnv) != "":
		return readAdminKey(os.Getenv(adminKeyEnv))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".config", "labseed", keys.AdminKeyFile))
	}
	candidates = append(candidates, storeKey)
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil || !errors.Is(err, os.ErrNotExist) {
			return readAdminKey(c)
		}
	}
	return nil, errNoAdminKey
}

func readAdminKey(name string) ([]byte, error) {
	k, err := keys.ReadHexKey(name)
	if errors.Is(err, keys.ErrNoKeys) {
		return nil, fmt.Errorf("%w (%s does not exist)", errNoAdminKey, name)
	}
	if errors.Is(err, os.ErrPermission) {
		return nil, fmt.Errorf("the admin key %s: %w (run as root, or give --admin-key FILE)", name, err)
	}
	return k, err
}
