// Command wordfreq is a hanzo-node tool counting word frequencies: the top N words of a text.
//
//	echo '{"text": "the cat and the hat", "top": 2}' | go run .
//	{"total_words":5,"unique_words":4,"top":[{"word":"the","count":2},{"word":"and","count":1}]}
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"unicode"

	hanzo "github.com/hanzoai/hanzo-node/hanzo-sdk/go"
)

// Input is the tool's params.
type Input struct {
	Text          string   `json:"text" description:"The text to analyse."`
	Top           int      `json:"top,omitempty" description:"How many words to return, most frequent first (default 10)."`
	MinLength     int      `json:"min_length,omitempty" description:"Ignore words shorter than this many letters."`
	CaseSensitive bool     `json:"case_sensitive,omitempty" description:"Count 'The' and 'the' separately."`
	Stopwords     []string `json:"stopwords,omitempty" description:"Words not to count."`
}

// WordCount is one word and how often it occurs.
type WordCount struct {
	Word  string `json:"word"`
	Count int    `json:"count"`
}

// Output is the tool's result.
type Output struct {
	TotalWords  int         `json:"total_words" description:"Words counted (after filtering)."`
	UniqueWords int         `json:"unique_words" description:"Distinct words counted."`
	Top         []WordCount `json:"top" description:"The most frequent words; ties in alphabetical order."`
}

const defaultTop = 10

var wordFreq = hanzo.Func("word_freq", "Counts word frequencies in a text and returns the top N words.", countWords)

// countWords is the tool: an ordinary function, tested natively in wordfreq_test.go.
func countWords(in Input) (Output, error) {
	if in.Top < 0 {
		return Output{}, errors.New("top must not be negative")
	}
	if in.MinLength < 0 {
		return Output{}, errors.New("min_length must not be negative")
	}
	top := in.Top
	if top == 0 {
		top = defaultTop
	}
	norm := func(w string) string {
		if in.CaseSensitive {
			return w
		}
		return strings.ToLower(w)
	}
	stop := make(map[string]bool, len(in.Stopwords))
	for _, w := range in.Stopwords {
		stop[norm(w)] = true
	}

	counts := map[string]int{}
	total := 0
	for _, w := range words(in.Text) {
		w = norm(w)
		if stop[w] || len([]rune(w)) < in.MinLength {
			continue
		}
		counts[w]++
		total++
	}
	all := make([]WordCount, 0, len(counts))
	for w, c := range counts {
		all = append(all, WordCount{w, c})
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].Count != all[j].Count {
			return all[i].Count > all[j].Count
		}
		return all[i].Word < all[j].Word
	})
	if len(all) > top {
		all = all[:top]
	}
	fmt.Fprintf(os.Stderr, "wordfreq: %d words, %d distinct\n", total, len(counts))
	return Output{TotalWords: total, UniqueWords: len(counts), Top: all}, nil
}

// words splits text into words: runs of letters and digits, keeping apostrophes and hyphens
// between two letters ("don't", "well-known").
func words(text string) []string {
	rs := []rune(text)
	var out []string
	start := -1
	for i, r := range rs {
		inWord := unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r)
		if !inWord && (r == '\'' || r == '’' || r == '-') && start >= 0 &&
			i+1 < len(rs) && unicode.IsLetter(rs[i-1]) && unicode.IsLetter(rs[i+1]) {
			inWord = true
		}
		switch {
		case inWord && start < 0:
			start = i
		case !inWord && start >= 0:
			out = append(out, string(rs[start:i]))
			start = -1
		}
	}
	if start >= 0 {
		out = append(out, string(rs[start:]))
	}
	return out
}
